package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// labPorts are the control plane's ports, kept in the state directory so a
// resumed control plane (serve --resume) answers where its clients (kubelets,
// kube-proxy, barelb, kubeconfigs) look for it.
type labPorts struct {
	API        int `json:"api"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

const portsFile = "ports.json"

// pickPorts chooses free ports; api is the apiserver's unless 0.
func pickPorts(api int) (labPorts, error) {
	var p labPorts
	var err error
	if api == 0 {
		if api, err = freePort(); err != nil {
			return p, err
		}
	}
	p.API = api
	if p.EtcdClient, err = freePort(); err != nil {
		return p, err
	}
	if p.EtcdPeer, err = freePort(); err != nil {
		return p, err
	}
	return p, nil
}

func writePorts(dir string, p labPorts) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, portsFile), b, 0o644)
}

func readPorts(dir string) (labPorts, error) {
	var p labPorts
	b, err := os.ReadFile(filepath.Join(dir, portsFile))
	if err != nil {
		return p, fmt.Errorf("no ports of an earlier run: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", portsFile, err)
	}
	if p.API == 0 || p.EtcdClient == 0 || p.EtcdPeer == 0 {
		return p, fmt.Errorf("%s names no port for the apiserver or etcd", portsFile)
	}
	return p, nil
}

// loadPKI takes the keys and certificates an earlier run wrote.
func loadPKI(dir string) (*labPKI, error) {
	p := pkiPaths(dir)
	for _, f := range []string{p.CACert, p.CAKey, p.ServingCert, p.ServingKey, p.ServiceAccountKey, p.ServiceAccountPub} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("no key or certificate of an earlier run: %w", err)
		}
	}
	pem, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, err
	}
	p.caPEM = pem
	return p, nil
}

// readToken takes the admin token an earlier run wrote (tokens.csv: token,user,uid,groups).
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("no token of an earlier run: %w", err)
	}
	token, _, ok := strings.Cut(string(b), ",")
	if !ok || token == "" {
		return "", fmt.Errorf("%s holds no token", file)
	}
	return token, nil
}
