// Command provisioner is the local cluster's PersistentVolume provisioner
// (hack/local-cluster.sh runs it next to the control plane). It serves every
// StorageClass whose provisioner is its --name: for each claim that the PV controller
// hands to it (annotation volume.kubernetes.io/storage-provisioner) and, with
// WaitForFirstConsumer, once the scheduler has picked a node (volume.kubernetes.io/
// selected-node), it makes a directory under --root (mode 0777, so any non-root uid can
// write; fsGroup also applies because the volume is of type "local") and creates a
// `local` PersistentVolume pinned to that node, pre-bound to the claim. When a volume it
// made is Released and its reclaim policy is Delete, it removes the directory and the PV.
//
// It also does an external resizer's job for its volumes, in classes that allow volume
// expansion: when a bound claim asks for more than its PV holds, it raises the PV's
// capacity and then the claim's status.capacity. A directory on the host has no size to
// grow, so nothing else is needed (and nothing is left for the kubelet to do on the node).
//
// It polls the API every --interval: a one-node test cluster has few claims, and a
// poll loop has no watch or cache to get wrong.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	annProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	annSelectedNode    = "volume.kubernetes.io/selected-node"
	annProvisionedBy   = "pv.kubernetes.io/provisioned-by"
	annPath            = "local.sessionops.dev/path"
)

type provisioner struct {
	client kubernetes.Interface
	name   string
	root   string
	node   string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of a user that may manage PVs and read PVCs and StorageClasses")
	name := flag.String("name", "sessionops.dev/local-path", "provisioner name StorageClasses refer to")
	root := flag.String("root", "", "directory that holds the volumes (required, absolute)")
	node := flag.String("node", "", "node name for classes with Immediate binding")
	interval := flag.Duration("interval", time.Second, "poll interval")
	flag.Parse()
	if *root == "" || !filepath.IsAbs(*root) {
		log.Fatal("--root must be an absolute path")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	cfg.UserAgent = "local-path-provisioner"
	p := &provisioner{client: kubernetes.NewForConfigOrDie(cfg), name: *name, root: filepath.Clean(*root), node: *node}
	if err := os.MkdirAll(p.root, 0o755); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("provisioner %s serving volumes under %s", p.name, p.root)
	for {
		if err := p.once(ctx); err != nil && ctx.Err() == nil {
			log.Print(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

func (p *provisioner) once(ctx context.Context) error {
	classes, err := p.client.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ours := map[string]*storagev1.StorageClass{}
	for i := range classes.Items {
		if c := &classes.Items[i]; c.Provisioner == p.name {
			ours[c.Name] = c
		}
	}
	pvcs, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
			continue
		}
		if pvc.Annotations[annProvisioner] != p.name && pvc.Annotations[annBetaProvisioner] != p.name {
			continue
		}
		class := ours[classOf(pvc)]
		if class == nil {
			continue
		}
		if err := p.provision(ctx, pvc, class); err != nil {
			log.Printf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	pvs, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	byName := map[string]*corev1.PersistentVolume{}
	for i := range pvs.Items {
		byName[pvs.Items[i].Name] = &pvs.Items[i]
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		class := ours[classOf(pvc)]
		pv := byName[pvc.Spec.VolumeName]
		if class == nil || pv == nil || pvc.Status.Phase != corev1.ClaimBound || pvc.DeletionTimestamp != nil {
			continue
		}
		if err := p.resize(ctx, pvc, pv, class); err != nil {
			log.Printf("resize %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations[annProvisionedBy] != p.name || pv.DeletionTimestamp != nil {
			continue
		}
		if pv.Status.Phase == corev1.VolumeReleased && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
			if err := p.remove(ctx, pv); err != nil {
				log.Printf("delete %s: %v", pv.Name, err)
			}
		}
	}
	return nil
}

func classOf(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return pvc.Annotations[corev1.BetaStorageClassAnnotation]
}

func (p *provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) error {
	node := pvc.Annotations[annSelectedNode]
	if node == "" {
		if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			return nil // the scheduler has not picked a node yet
		}
		node = p.node
	}
	if node == "" {
		return fmt.Errorf("no node selected and no --node given")
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return fmt.Errorf("block volumes are not supported")
	}
	name := "pvc-" + string(pvc.UID)
	if _, err := p.client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil // made already; the PV controller binds it
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("claim requests no storage")
	}
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", pvc.Namespace, pvc.Name, pvc.UID))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	fs := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: p.name, annPath: dir},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			VolumeMode:                    &fs,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	log.Printf("provisioned %s for %s/%s at %s (%s)", name, pvc.Namespace, pvc.Name, dir, size.String())
	return nil
}

// resize grows pv to what pvc asks when the class allows expansion: the PV's capacity
// first, then the claim's status (capacity and allocatedResources), so that a failure
// between the two is finished on the next pass. Claims whose request their status already
// meets, and volumes another provisioner made, are left alone.
func (p *provisioner) resize(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, class *storagev1.StorageClass) error {
	if class.AllowVolumeExpansion == nil || !*class.AllowVolumeExpansion || pv.Annotations[annProvisionedBy] != p.name {
		return nil
	}
	want, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil
	}
	if have, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok && have.Cmp(want) >= 0 {
		return nil
	}
	if have := pv.Spec.Capacity[corev1.ResourceStorage]; have.Cmp(want) < 0 {
		pv = pv.DeepCopy()
		if pv.Spec.Capacity == nil {
			pv.Spec.Capacity = corev1.ResourceList{}
		}
		pv.Spec.Capacity[corev1.ResourceStorage] = want
		if _, err := p.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("raising %s to %s: %w", pv.Name, want.String(), err)
		}
	}
	pvc = pvc.DeepCopy()
	if pvc.Status.Capacity == nil {
		pvc.Status.Capacity = corev1.ResourceList{}
	}
	pvc.Status.Capacity[corev1.ResourceStorage] = want
	if pvc.Status.AllocatedResources == nil {
		pvc.Status.AllocatedResources = corev1.ResourceList{}
	}
	pvc.Status.AllocatedResources[corev1.ResourceStorage] = want
	delete(pvc.Status.AllocatedResourceStatuses, corev1.ResourceStorage)
	var conds []corev1.PersistentVolumeClaimCondition
	for _, c := range pvc.Status.Conditions {
		if c.Type != corev1.PersistentVolumeClaimResizing && c.Type != corev1.PersistentVolumeClaimFileSystemResizePending {
			conds = append(conds, c)
		}
	}
	pvc.Status.Conditions = conds
	if _, err := p.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("recording capacity %s: %w", want.String(), err)
	}
	log.Printf("resized %s for %s/%s to %s", pv.Name, pvc.Namespace, pvc.Name, want.String())
	return nil
}

func (p *provisioner) remove(ctx context.Context, pv *corev1.PersistentVolume) error {
	dir := pv.Annotations[annPath]
	if dir == "" && pv.Spec.Local != nil {
		dir = pv.Spec.Local.Path
	}
	if dir != "" {
		clean := filepath.Clean(dir)
		if !strings.HasPrefix(clean, p.root+string(filepath.Separator)) {
			return fmt.Errorf("refusing to remove %s: not under %s", dir, p.root)
		}
		if err := os.RemoveAll(clean); err != nil {
			return err
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.Printf("deleted %s and %s", pv.Name, dir)
	return nil
}
