// Command passerelle is the Passerelle bridge binary: it generates the config and the
// appservice registration, and runs the bridge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/passerelle/passerelle/registration"
)

// version is the release; set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `Usage:
  passerelle [-c config.yaml] [-r registration.yaml]
      Run the bridge. The registration defaults to registration.yaml beside the config.
  passerelle generate-config [-o config.yaml]
      Print a commented example config (or write it, mode 0600, to a new file).
  passerelle generate-registration [-c config.yaml] [-o registration.yaml]
      Generate the tokens if the config has none (they are written back into it) and
      write the appservice registration for the homeserver.
  passerelle version
      Print the version.
`

// errUsage means the command line was wrong; usage has been printed and the exit
// status is 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status: 0 on success,
// 1 on error (one line "passerelle: <message>" on stderr), 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "passerelle: internal error: %v\n", r)
			code = 1
		}
	}()
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "":
		err = runBridgeCommand(args, stderr)
	case "generate-config":
		err = generateConfig(args, stdout, stderr)
	case "generate-registration":
		err = generateRegistration(args, stdout, stderr)
	case "version":
		err = printVersion(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "passerelle: unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "passerelle: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
}

// newFlags makes a flag set that reports problems on stderr with the usage text.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, usage) }
	return flags
}

// parseFlags parses args, allowing no positional arguments.
func parseFlags(flags *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "passerelle: unexpected argument %q\n%s", flags.Arg(0), usage)
		return errUsage
	}
	return nil
}

func printVersion(args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("version", stderr), args, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "passerelle %s\n", version)
	return nil
}

func generateConfig(args []string, stdout, stderr io.Writer) error {
	flags := newFlags("generate-config", stderr)
	out := flags.String("o", "", "write the example config to this new `file` (mode 0600) instead of stdout")
	if err := parseFlags(flags, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		_, err := io.WriteString(stdout, config.Example())
		return err
	}
	if err := config.WriteFileExclusive(*out, []byte(config.Example()), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; set homeserver.address and homeserver.domain, then run passerelle generate-registration -c %s\n", *out, *out)
	return nil
}

func generateRegistration(args []string, stdout, stderr io.Writer) error {
	flags := newFlags("generate-registration", stderr)
	cfgPath := flags.String("c", "config.yaml", "config `file`")
	out := flags.String("o", "", "registration `file` to write (default: registration.yaml beside the config)")
	if err := parseFlags(flags, args, stderr); err != nil {
		return err
	}
	regPath := *out
	if regPath == "" {
		regPath = defaultRegistrationPath(*cfgPath)
	}
	if filepath.Clean(regPath) == filepath.Clean(*cfgPath) {
		return fmt.Errorf("-o %s would overwrite the config", regPath)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	as, hs := cfg.AppService.ASToken, cfg.AppService.HSToken
	if as == "" || hs == "" {
		newAS, newHS := registration.GenerateTokens()
		if as == "" {
			as = newAS
		}
		if hs == "" {
			hs = newHS
		}
		if err := config.SetTokens(*cfgPath, as, hs); err != nil {
			return err
		}
		cfg.AppService.ASToken, cfg.AppService.HSToken = as, hs
	}
	reg, err := registration.Build(cfg, available().pluginNames()...)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	if err := registration.Write(regPath, reg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; list it in the homeserver's app_service_config_files and restart the homeserver\n", regPath)
	return nil
}

func runBridgeCommand(args []string, stderr io.Writer) error {
	flags := newFlags("passerelle", stderr)
	cfgPath := flags.String("c", "config.yaml", "config `file`")
	regFlag := flags.String("r", "", "registration `file` (default: registration.yaml beside the config)")
	if err := parseFlags(flags, args, stderr); err != nil {
		return err
	}
	regPath := *regFlag
	if regPath == "" {
		regPath = defaultRegistrationPath(*cfgPath)
	}
	cfg, reg, err := loadAndCheck(*cfgPath, regPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = runBridge(ctx, cfg, reg)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped by a signal
	}
	return err
}

// loadAndCheck loads the config and the registration and checks that they agree.
func loadAndCheck(cfgPath, regPath string) (*config.Config, *appservice.Registration, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	reg, err := appservice.LoadRegistration(regPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: no such file (run passerelle generate-registration -c %s first)", regPath, cfgPath)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, fmt.Errorf("%s: %s", regPath, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := registration.Check(cfg, reg, available().pluginNames()...); err != nil {
		var me *registration.MismatchError
		if errors.As(err, &me) {
			me.File = regPath
			return nil, nil, me
		}
		return nil, nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	return cfg, reg, nil
}

func defaultRegistrationPath(cfgPath string) string {
	return filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
}
