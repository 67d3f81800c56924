package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// SetTokens writes appservice.as_token and appservice.hs_token into the config file at
// path. It edits the YAML document tree, so comments and the other keys survive (the
// file is re-indented with two spaces). The file is replaced atomically with mode 0600.
func SetTokens(path, asToken, hsToken string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("writing tokens to %s: %w", path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("writing tokens to %s: %w", path, err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("writing tokens to %s: the document is not a mapping", path)
	}
	as := mappingValue(doc.Content[0], "appservice")
	if isNull(as) {
		*as = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: as.HeadComment, LineComment: as.LineComment}
	}
	if as.Kind != yaml.MappingNode {
		return fmt.Errorf("writing tokens to %s: appservice is not a mapping", path)
	}
	setString(mappingValue(as, "as_token"), asToken)
	setString(mappingValue(as, "hs_token"), hsToken)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("writing tokens to %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("writing tokens to %s: %w", path, err)
	}
	return WriteFileAtomic(path, buf.Bytes(), 0o600)
}

// mappingValue returns the value node of key in the mapping m, appending an empty
// (null) entry when the key is absent.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
	return v
}

func setString(n *yaml.Node, value string) {
	n.Kind = yaml.ScalarNode
	n.Tag = "!!str"
	n.Value = value
	n.Content = nil
	n.Alias = nil
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle|yaml.FlowStyle) != 0 {
		n.Style = 0
	}
}

// WriteFileAtomic writes data to a temporary file beside path with mode perm, syncs
// it and renames it over path, so readers never see a partial file.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ErrExists is returned by WriteFileExclusive when the file is already there.
var ErrExists = errors.New("already exists")

// WriteFileExclusive writes data to a new file at path with mode perm, refusing to
// replace an existing file.
func WriteFileExclusive(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w (remove it or choose another file)", path, ErrExists)
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
