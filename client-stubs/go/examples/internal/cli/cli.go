// Package cli holds the command-line setup the example commands share: the
// -topic and -socket flags, a context that an interrupt cancels, and the
// connection to the daemon.
package cli

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"

	kafkad "github.com/kafkad/kafkad/client-stubs/go"
)

// Flags are the flags every example takes.
type Flags struct {
	Topic  string // -topic, required
	Socket string // -socket, empty: $KAFKAD_SOCKET or kafkad.DefaultSocket
}

// Define defines -topic (described by topicUsage) and -socket on the
// default flag set; define the command's own flags too, then call Parse.
func Define(topicUsage string) *Flags {
	f := &Flags{}
	flag.StringVar(&f.Topic, "topic", "", topicUsage)
	flag.StringVar(&f.Socket, "socket", "", "kafkad socket (default $KAFKAD_SOCKET or "+kafkad.DefaultSocket+")")
	return f
}

// Parse parses the command line; without -topic it prints the usage and
// exits with status 2.
func (f *Flags) Parse() {
	flag.Parse()
	if f.Topic == "" {
		flag.Usage()
		os.Exit(2)
	}
}

// Connect returns a context that an interrupt cancels, its stop function,
// and a client connected to the daemon (on -socket if given) with opts
// added; it exits through log.Fatal when the daemon cannot be reached.
// The caller defers stop() and client.Close().
func (f *Flags) Connect(opts ...kafkad.Option) (context.Context, context.CancelFunc, *kafkad.Client) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	if f.Socket != "" {
		opts = append([]kafkad.Option{kafkad.WithSocket(f.Socket)}, opts...)
	}
	client, err := kafkad.Dial(ctx, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return ctx, stop, client
}
