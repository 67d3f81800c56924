// Command fakebridge stands in for the passerelle binary in the harness's own tests:
// it accepts the same flags, serves /_passerelle/ready on appservice.listen, writes a
// registration for generate-registration, and exits at once when the config's
// bridge.command_prefix is "!crash".
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"gopkg.in/yaml.v3"
)

func main() {
	args := os.Args[1:]
	generate := len(args) > 0 && args[0] == "generate-registration"
	if generate {
		args = args[1:]
	}
	fs := flag.NewFlagSet("fakebridge", flag.ExitOnError)
	cfgPath := fs.String("c", "", "config")
	regPath := fs.String("r", "", "registration")
	outPath := fs.String("o", "", "registration output")
	_ = fs.Parse(args)

	data, err := os.ReadFile(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading config:", err)
		os.Exit(2)
	}
	var cfg struct {
		AppService struct {
			Listen string `yaml:"listen"`
		} `yaml:"appservice"`
		Bridge struct {
			CommandPrefix string `yaml:"command_prefix"`
		} `yaml:"bridge"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "parsing config:", err)
		os.Exit(2)
	}
	if generate {
		if err := os.WriteFile(*outPath, []byte("id: passerelle\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if cfg.Bridge.CommandPrefix == "!crash" {
		fmt.Println("fakebridge: crashing as asked")
		os.Exit(3)
	}
	fmt.Printf("fakebridge: listening on %s, registration %s\n", cfg.AppService.Listen, *regPath)
	http.HandleFunc("/_passerelle/ready", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	go func() {
		if err := http.ListenAndServe(cfg.AppService.Listen, nil); err != nil {
			fmt.Println("fakebridge:", err)
			os.Exit(1)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("fakebridge: stopping on SIGTERM")
}
