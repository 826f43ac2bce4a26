package main

import (
	"bytes"
	"testing"
)

func TestVersionFlagPrintsNameAndVersion(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "tmwardenctl "+version+"\n"; got != want {
		t.Errorf("--version printed %q, want %q (as tmwarden-agent and tmwarden-coordinator print it)", got, want)
	}
}
