package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	// modulePath is the main module's path, used to find the repository root.
	modulePath = "github.com/passerelle/passerelle"
	// DendriteVersion is the Dendrite release pinned in tests/tools/go.mod; it names
	// the cache directory so a version bump rebuilds.
	DendriteVersion = "v0.15.2"
)

// dendriteBinaries are the programs BuildDendrite produces, by package path.
var dendriteBinaries = []string{
	"github.com/element-hq/dendrite/cmd/dendrite",
	"github.com/element-hq/dendrite/cmd/create-account",
	"github.com/element-hq/dendrite/cmd/generate-keys",
}

// RepoRoot walks up from the working directory to the directory holding the go.mod of
// module github.com/passerelle/passerelle (tests/tools has its own go.mod, which is
// skipped).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && goModModule(data) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding repository root: no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// goModModule returns the module path declared in go.mod contents.
func goModModule(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`)
		}
	}
	return ""
}

// CacheDir is where built test programs are kept between runs:
// $PASSERELLE_TEST_CACHE, or $HOME/.cache/passerelle-tests.
func CacheDir() (string, error) {
	if dir := os.Getenv("PASSERELLE_TEST_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating test cache (set PASSERELLE_TEST_CACHE): %w", err)
	}
	return filepath.Join(home, ".cache", "passerelle-tests"), nil
}

// BuildDendrite builds Dendrite's dendrite, create-account and generate-keys programs
// from the tests/tools module into <CacheDir>/dendrite-v0.15.2 and returns that
// directory. When all three already exist it returns at once. An exclusive file lock
// on the directory serializes concurrent callers (test binaries of different packages
// run in parallel), so only the first one builds and the rest wait and reuse it. The
// first build takes several minutes.
func BuildDendrite(ctx context.Context) (binDir string, err error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	binDir = filepath.Join(cache, "dendrite-"+DendriteVersion)
	if dendriteBuilt(binDir) {
		return binDir, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("creating dendrite cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "dendrite-"+DendriteVersion+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have finished the build while we waited for the lock.
	if dendriteBuilt(binDir) {
		return binDir, nil
	}

	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	// Build into a scratch directory and rename each program into place, so a build
	// that dies halfway never leaves a truncated binary that looks finished.
	tmp, err := os.MkdirTemp(cache, "dendrite-build-")
	if err != nil {
		return "", fmt.Errorf("creating dendrite build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build", "-tags", "tools", "-o", tmp + string(filepath.Separator)}, dendriteBinaries...)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = filepath.Join(root, "tests", "tools")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building dendrite in %s: %w\n%s", cmd.Dir, err, out)
	}
	for _, pkg := range dendriteBinaries {
		name := filepath.Base(pkg)
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(binDir, name)); err != nil {
			return "", fmt.Errorf("installing %s into cache: %w", name, err)
		}
	}
	return binDir, nil
}

// dendriteBuilt reports whether every Dendrite program is present in binDir.
func dendriteBuilt(binDir string) bool {
	for _, pkg := range dendriteBinaries {
		st, err := os.Stat(filepath.Join(binDir, filepath.Base(pkg)))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock on path, creating it if needed, and returns the
// function that releases it. It polls so that ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, err)
		}
	}
}

// BuildBridge builds ./cmd/passerelle from the repository root with the given build
// tags into a fresh temporary directory and returns the binary's path. The caller
// owns the directory (filepath.Dir of the result) and may remove it.
func BuildBridge(ctx context.Context, tags ...string) (binPath string, err error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "passerelle-bin-")
	if err != nil {
		return "", fmt.Errorf("creating bridge build dir: %w", err)
	}
	binPath = filepath.Join(dir, "passerelle")
	// goolm: the bridge's end-to-end encryption is built on mautrix's pure-Go Olm.
	args := []string{"build", "-tags", strings.Join(append([]string{"goolm"}, tags...), ",")}
	args = append(args, "-o", binPath, "./cmd/passerelle")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building passerelle (tags %q): %w\n%s", tags, err, out)
	}
	return binPath, nil
}

// goTool is the go command to run: the one from GOROOT of the running toolchain when
// it exists, else "go" from PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
