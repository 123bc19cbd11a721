package apply

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// quantityEqual compares a desired quantity string with what the apiserver stored, which
// may be spelled differently ("1024Mi" and "1Gi").
func quantityEqual(want string, have any) bool {
	w, err := resource.ParseQuantity(want)
	if err != nil {
		return false
	}
	var h resource.Quantity
	switch v := have.(type) {
	case string:
		if h, err = resource.ParseQuantity(v); err != nil {
			return false
		}
	case int64:
		h = *resource.NewQuantity(v, resource.DecimalSI)
	case float64:
		h = *resource.NewQuantity(int64(v), resource.DecimalSI)
	default:
		return false
	}
	return w.Cmp(h) == 0
}

// normalizeNumber makes JSON numbers comparable whatever integer type decoded them.
func normalizeNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		if n == float64(int64(n)) {
			return int64(n)
		}
	}
	return v
}
