package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// parseFlags parses a command's args with fs. -h or -help prints fs's usage
// on stdout and reports help (the command then does nothing else); an
// unknown flag or a bad value is an error naming the command, and so is
// any argument left after the flags: these commands take flags only.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w (see: cohort-connector %s -h)", fs.Name(), err, fs.Name())
	case fs.NArg() > 0:
		return false, fmt.Errorf("%s: unexpected argument %q (see: cohort-connector %s -h)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return false, nil
}

// asksForHelp reports whether a command's arguments ask for its help:
// "help" first, or -h, -help or --help anywhere (activations put -h, dlq
// list -h). It is printed before the configuration is loaded, so help
// works on a machine without one.
func asksForHelp(args []string) bool {
	return len(args) > 0 && args[0] == "help" || slices.ContainsFunc(args, func(a string) bool {
		return a == "-h" || a == "-help" || a == "--help"
	})
}

// isTerminal reports whether w is a terminal (colours and progress bars
// are for people; a file, a pipe or a log collector gets plain text).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// consoleWriter is zerolog's human-readable output to w, in colour on a
// terminal only.
func consoleWriter(w io.Writer) zerolog.ConsoleWriter {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
}

// usage makes fs's help the head line, then its flags in this project's
// one style, --name (the flag package takes -name too).
func usage(fs *flag.FlagSet, head string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nFlags:\n", head)
		fs.VisitAll(func(f *flag.Flag) {
			kind, text := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, kind, text)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
}
