package manager

import "testing"

func TestMemoryLimitFromTheContainer(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	for _, c := range []struct {
		name  string
		vars  map[string]string
		ratio float64
		want  int64
	}{
		{"90% of the limit", map[string]string{MemoryLimitEnv: "536870912"}, 0.9, 483183820},
		{"GOMEMLIMIT wins", map[string]string{MemoryLimitEnv: "536870912", "GOMEMLIMIT": "300MiB"}, 0.9, 0},
		{"no limit given", map[string]string{}, 0.9, 0},
		{"ratio 0 sets none", map[string]string{MemoryLimitEnv: "536870912"}, 0, 0},
		{"a ratio over 1 sets none", map[string]string{MemoryLimitEnv: "536870912"}, 1.5, 0},
		{"garbage", map[string]string{MemoryLimitEnv: "512Mi"}, 0.9, 0},
	} {
		if got := memoryLimit(env(c.vars), c.ratio); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
