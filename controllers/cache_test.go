package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sessionops/session-operator/internal/render"
)

func TestSlimPodKeepsWhatTheOperatorReads(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-store-1", Labels: map[string]string{
			render.LabelName: "redis", render.LabelInstance: "shop", render.LabelComponent: render.ComponentStore,
			render.LabelPartOf: "session-operator", render.LabelManagedBy: render.ManagedBy, render.LabelRole: render.RolePrimary,
			appsv1.ControllerRevisionHashLabelKey: "shop-store-5d8", appsv1.StatefulSetPodNameLabel: "shop-store-1", appsv1.PodIndexLabel: "1",
		}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.0"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	out, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Pod)
	if len(slim.Labels) != 7 || slim.Labels[render.LabelRole] != render.RolePrimary || slim.Labels[appsv1.ControllerRevisionHashLabelKey] != "shop-store-5d8" {
		t.Errorf("labels %v: want the role and revision, without the pod's name and index", slim.Labels)
	}
	if len(slim.Spec.Containers) != 0 || slim.Status.PodIP != "10.0.0.5" || !podReady(slim) {
		t.Errorf("slimmed pod: %+v", slim)
	}
}
