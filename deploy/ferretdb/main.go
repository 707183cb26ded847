// Command ferretdb runs FerretDB v1 (MongoDB wire protocol on SQLite) for the local stack.
//
// It embeds FerretDB as a library instead of `go install`ing its command, because the
// installed command panics at start without build/version/version.txt (FerretDB#2982);
// a main module of our own skips that check. State is kept in memory (telemetry off).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on --debug-addr only: what the benchmark's figures say FerretDB spends
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "", "SQLite directory URL, e.g. file:/var/lib/ferretdb/ (must exist, must end in /)")
	debug := flag.Bool("debug", false, "log every connection and command")
	debugAddr := flag.String("debug-addr", "", "serve Go's pprof profiles here (e.g. 127.0.0.1:6060); off when empty")
	flag.Parse()
	if *debugAddr != "" {
		go func() { log.Println(http.ListenAndServe(*debugAddr, nil)) }()
	}
	if *sqliteURL == "" {
		log.Fatal("--sqlite-url is required")
	}

	level := slog.LevelError // v1 logs every unsupported command (e.g. endSessions) at WARN
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Printf("FerretDB starting on %s (sqlite %s)", *listen, *sqliteURL)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
