package fsql

import (
	"context"
	"log/slog"
)

// debugWith logs a query with its fields only when debug logging is on. FerretDB v1
// called l.With(fields...) unconditionally: the text handler formats the attributes
// (every document's JSON, quoted) when the child logger is made, before the level is
// looked at; under load that was an eighth of FerretDB's CPU, for lines never written.
func debugWith(ctx context.Context, l *slog.Logger, fields []any, msg string) {
	if l.Enabled(ctx, slog.LevelDebug) {
		l.With(fields...).DebugContext(ctx, msg)
	}
}
