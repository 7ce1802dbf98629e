//go:build linux

package kubeenv

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// The certificates the cluster runs on verify the way the API server and
// kubelet check them: serving certificates for their hosts, client
// certificates with the identity (CN, O) that authorization sees.
func TestIssue(t *testing.T) {
	ca, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	parse := func(kp KeyPair) *x509.Certificate {
		t.Helper()
		b, _ := pem.Decode(kp.CertPEM)
		if b == nil {
			t.Fatal("no PEM certificate")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	serving, err := ca.Issue("kube-apiserver", nil, "127.0.0.1", "kubernetes.default.svc")
	if err != nil {
		t.Fatal(err)
	}
	s := parse(serving)
	for _, host := range []string{"127.0.0.1", "kubernetes.default.svc"} {
		if _, err := s.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	if _, err := s.Verify(x509.VerifyOptions{DNSName: "10.0.0.1", Roots: roots}); err == nil {
		t.Error("serving certificate verifies for a host it was not issued for")
	}

	client, err := ca.Issue("system:node:n1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(client)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies for serving")
	}
	if c.Subject.CommonName != "system:node:n1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client subject = %v", c.Subject)
	}
	if other, _ := newCA(); other != nil {
		pool := x509.NewCertPool()
		pool.AddCert(other.Cert)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
			t.Error("a certificate verifies against another cluster's CA")
		}
	}
}
