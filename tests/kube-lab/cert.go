package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cert issues a client certificate from the lab CA in --dir: how kubelets
// (CN system:node:NAME, O system:nodes) and kube-proxy (CN
// system:kube-proxy) get their identities, as kubeadm would give them.
func cert(args []string) error {
	fs := flag.NewFlagSet("cert", flag.ContinueOnError)
	dir := fs.String("dir", "", "the control plane's state directory (holds ca.crt and ca.key)")
	cn := fs.String("cn", "", "common name (the user)")
	orgs := fs.String("org", "", "organizations (groups), comma-separated")
	out := fs.String("out", "", "write OUT.crt and OUT.key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *cn == "" || *out == "" {
		return errors.New("--dir, --cn and --out are required")
	}
	return issueClient(*dir, *cn, *orgs, *out)
}

// issueClient writes out.crt and out.key: a client certificate for cn in
// the comma-separated groups orgs, signed by the CA in dir.
func issueClient(dir, cn, orgs, out string) error {
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	subject := pkix.Name{CommonName: cn}
	if orgs != "" {
		subject.Organization = strings.Split(orgs, ",")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return writeECKey(out+".key", key)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s: ca.crt or ca.key is not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}
