package store

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
)

// redisLogger sends go-redis's own messages (mostly "failed to dial" while a store's
// Sentinels are still starting) to the operator's log at debug verbosity, where they help
// without drowning the log of a manager with many stores starting at once.
type redisLogger struct{ log logr.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.V(1).Info(fmt.Sprintf(format, v...))
}

// RouteRedisLogs makes go-redis log through log. go-redis has one process-wide logger.
func RouteRedisLogs(log logr.Logger) {
	redis.SetLogger(redisLogger{log: log.WithName("go-redis")})
}
