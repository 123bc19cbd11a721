package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// Hash is a short, stable digest of any JSON-encodable value.
func Hash(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		raw = fmt.Appendf(nil, "%#v", v)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

func namedPort(name string) intstr.IntOrString { return intstr.FromString(name) }

var (
	int32Ptr = ptr.To[int32]
	int64Ptr = ptr.To[int64]
	boolPtr  = ptr.To[bool]
)
