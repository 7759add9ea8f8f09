package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The files runCerts writes, by role.
const certsHelp = `Writes, into --dir (files that already exist are kept):
  ca.crt ca.key                      the one CA every certificate below is signed by
  apiserver.crt apiserver.key        kube-apiserver serving (127.0.0.1, localhost, kubernetes.default...)
  kubelet.crt kubelet.key            the node's kubelet API serving cert (--node-ip, --node-name)
  node.crt node.key                  the node's client identity: system:node:NAME in system:nodes
  apiserver-kubelet-client.crt .key  the apiserver's identity toward the kubelet API (system:masters)
  admin.crt admin.key                an admin identity (sidekill-harness-admin in system:masters)
  controller-manager.crt .key        kube-controller-manager's identity (system:kube-controller-manager)
  sa.key sa.pub                      the service-account token signing key pair
  tokens.csv                         static token file: one admin token (admin.token holds it)
`

type pair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func loadPair(dir, name string) (*pair, error) {
	cb, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("%s: not PEM", name)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, err
	}
	return &pair{cert, key}, nil
}

func issue(dir, name string, tmpl *x509.Certificate, ca *pair) (*pair, error) {
	if exists(filepath.Join(dir, name+".crt")) && exists(filepath.Join(dir, name+".key")) {
		return loadPair(dir, name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kder, 0o600); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &pair{cert, key}, nil
}

func runCerts(args []string) int {
	fs := newFlagSet("certs", "certs --dir DIR", certsHelp)
	dir := fs.String("dir", "", "folder to write into (required); created if missing")
	nodeName := fs.String("node-name", "sidekill-node", "the node's name (kubelet certs)")
	nodeIP := fs.String("node-ip", "127.0.0.1", "the node's address (kubelet serving cert)")
	serviceIP := fs.String("service-ip", "10.0.0.1", "the kubernetes Service's cluster IP (apiserver cert)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "certs: --dir is required")
		return 2
	}
	nip, sip := net.ParseIP(*nodeIP), net.ParseIP(*serviceIP)
	if nip == nil || sip == nil {
		fmt.Fprintln(os.Stderr, "certs: --node-ip and --service-ip must be IP addresses")
		return 2
	}
	if err := writeCerts(*dir, *nodeName, nip, sip); err != nil {
		fmt.Fprintf(os.Stderr, "certs: %v\n", err)
		return 1
	}
	return 0
}

func writeCerts(dir, nodeName string, nodeIP, serviceIP net.IP) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := issue(dir, "ca", &x509.Certificate{
		Subject:               pkix.Name{CommonName: "sidekill-harness-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	usage := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	leaves := []struct {
		name string
		tmpl *x509.Certificate
	}{
		{"apiserver", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), serviceIP},
			KeyUsage:    usage, ExtKeyUsage: server,
		}},
		{"kubelet", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
			DNSNames:    []string{nodeName, "localhost"},
			IPAddresses: []net.IP{nodeIP},
			KeyUsage:    usage, ExtKeyUsage: server,
		}},
		{"node", &x509.Certificate{
			Subject:  pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
			KeyUsage: usage, ExtKeyUsage: client,
		}},
		{"apiserver-kubelet-client", &x509.Certificate{
			Subject:  pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
			KeyUsage: usage, ExtKeyUsage: client,
		}},
		{"controller-manager", &x509.Certificate{
			Subject:  pkix.Name{CommonName: "system:kube-controller-manager"},
			KeyUsage: usage, ExtKeyUsage: client,
		}},
		{"admin", &x509.Certificate{
			Subject:  pkix.Name{CommonName: "sidekill-harness-admin", Organization: []string{"system:masters"}},
			KeyUsage: usage, ExtKeyUsage: client,
		}},
	}
	for _, l := range leaves {
		if _, err := issue(dir, l.name, l.tmpl, ca); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	if !exists(filepath.Join(dir, "sa.key")) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		pder, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, "sa.key"), "EC PRIVATE KEY", kder, 0o600); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pder, 0o644); err != nil {
			return err
		}
	}
	if !exists(filepath.Join(dir, "tokens.csv")) {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		token := hex.EncodeToString(b)
		line := fmt.Sprintf("%s,sidekill-harness-admin-token,sidekill-harness-admin-token,\"system:masters\"\n", token)
		if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(line), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}
