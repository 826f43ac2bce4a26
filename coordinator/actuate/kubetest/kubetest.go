// Package kubetest starts a real Kubernetes control plane for tests: Debian's etcd, and
// kube-apiserver and kube-controller-manager (disruption, deployment, replicaset and
// serviceaccount controllers) built from k8s.io/kubernetes by hack/kube-control-plane.sh.
// It stands in for the scheduler and the kubelet only (it binds pods, marks them Running and
// Ready, and finishes graceful deletions), and keeps the API server's audit log as a witness.
package kubetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tmwarden/tmwarden/packaging/releasebin"
)

// Version is the Kubernetes release the control plane is built from.
func Version(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "hack", "kubecontrolplane", "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		return "", errors.New("hack/kubecontrolplane/go.mod requires no k8s.io/kubernetes")
	}
	return string(m[1]), nil
}

// RepoRoot finds the repository's root from the working directory (a package directory).
func RepoRoot() (string, error) { return releasebin.ModuleRoot() }

// Binaries are the control plane's executables.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Version string
}

// Find locates the binaries hack/kube-control-plane.sh installs, or says exactly what is missing.
func Find() (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	v, err := Version(root)
	if err != nil {
		return Binaries{}, err
	}
	dir := filepath.Join(root, ".tools", "kube-"+v)
	b := Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), ControllerManager: filepath.Join(dir, "kube-controller-manager"), Version: v}
	for _, p := range []string{b.APIServer, b.ControllerManager} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%s is not built (run `make test-deps`, which runs hack/kube-control-plane.sh)", p)
		}
	}
	if b.Etcd, err = exec.LookPath("etcd"); err != nil {
		return b, errors.New("etcd is not installed (Debian's etcd-server; `make test-deps` installs it)")
	}
	return b, nil
}

// Cluster is a running control plane.
type Cluster struct {
	// Admin is a client in system:masters; only the stand-ins and the test's setup use it.
	Admin  kubernetes.Interface
	Config *rest.Config // Admin's
	// AuditLog is the API server's audit log (JSON lines, level Metadata).
	AuditLog string
	// Kubeconfig is an admin kubeconfig file (for helm).
	Kubeconfig string
	Version    string
	dir        string
	stopStand  context.CancelFunc
	standDone  sync.WaitGroup
}

// Start starts etcd, kube-apiserver and kube-controller-manager in t's temporary directory,
// and the scheduler and kubelet stand-ins; t.Cleanup stops them. It skips t, saying why, when
// the binaries are absent.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bins, err := Find()
	if err != nil {
		t.Skipf("no real Kubernetes control plane: %v", err)
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: dir, AuditLog: filepath.Join(dir, "audit.log"), Version: bins.Version}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("control plane files kept in %s", dir)
		}
	})
	token := randHex(16)
	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	c.run(t, "etcd", bins.Etcd, "--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL, "--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	write(t, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	write(t, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	write(t, filepath.Join(dir, "tokens.csv"), []byte(token+",admin,admin-uid,system:masters\n"))
	write(t, filepath.Join(dir, "audit-policy.yaml"), []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"))
	c.run(t, "kube-apiserver", bins.APIServer,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--audit-policy-file="+filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path="+c.AuditLog, "--audit-log-format=json", "--audit-log-mode=blocking",
		"--profiling=false")

	c.Config = &rest.Config{Host: "https://127.0.0.1:" + strconv.Itoa(apiPort), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	write(t, c.Kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kt, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: kt, context: {cluster: kt, user: admin}}]
current-context: kt
`, c.Config.Host, token)))
	if c.Admin, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t)
	c.run(t, "kube-controller-manager", bins.ControllerManager,
		"--kubeconfig="+c.Kubeconfig, "--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--controllers=disruption,deployment,replicaset,serviceaccount",
		"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false")

	ctx, cancel := context.WithCancel(context.Background())
	c.stopStand = cancel
	c.standDone.Add(1)
	go func() { defer c.standDone.Done(); c.standIns(ctx) }()
	t.Cleanup(func() { cancel(); c.standDone.Wait() })
	return c
}

// run starts a control-plane process with its output in dir/<name>.log and stops it (SIGTERM,
// then SIGKILL) on cleanup.
func (c *Cluster) run(t testing.TB, name, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
}

func (c *Cluster) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := c.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			// The default namespace and its service account come with the first controllers.
			return
		}
		last = fmt.Errorf("%v %s", err, body)
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready within 3m: %v (logs in %s)", last, c.dir)
}

// ServiceAccountConfig returns a client configuration that authenticates as the service
// account, with a token from the TokenRequest API, as a pod of it would.
func (c *Cluster) ServiceAccountConfig(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	exp := int64(3600)
	tr, err := c.Admin.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", namespace, name, err)
	}
	return &rest.Config{Host: c.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

// AddNode creates a Ready node, as a kubelet registering would.
func (c *Cluster) AddNode(t testing.TB, name string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	n, err := c.Admin.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubetest stand-in", LastHeartbeatTime: now, LastTransitionTime: now}}
	n.Status.Allocatable = corev1.ResourceList{}
	if n, err = c.Admin.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server's TaintNodesByCondition admission taints a new node not-ready; the node
	// lifecycle controller (not run here) lifts it once the node is Ready: do that.
	var kept []corev1.Taint
	for _, x := range n.Spec.Taints {
		if x.Key != corev1.TaintNodeNotReady {
			kept = append(kept, x)
		}
	}
	n.Spec.Taints = kept
	if _, err := c.Admin.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// standIns are the scheduler and the kubelet, reduced to what the tests need: every second,
// unbound pods are bound to the schedulable node (no NoSchedule taint the pod does not
// tolerate, nodeSelector matched) with the fewest pods; bound pods become Running and Ready;
// pods being deleted gracefully are deleted at once, as a kubelet does once the containers stop.
func (c *Cluster) standIns(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = c.standInPass(ctx)
	}
}

func (c *Cluster) standInPass(ctx context.Context) error {
	nodes, err := c.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	pods, err := c.Admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	load := map[string]int{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			load[p.Spec.NodeName]++
		}
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case p.DeletionTimestamp != nil:
			zero := int64(0)
			_ = c.Admin.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
				Preconditions: &metav1.Preconditions{UID: &p.UID}})
		case p.Spec.NodeName == "":
			best := ""
			for _, n := range nodes.Items {
				if schedulable(&n, p) && (best == "" || load[n.Name] < load[best]) {
					best = n.Name
				}
			}
			if best == "" {
				continue
			}
			err := c.Admin.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
				Target: corev1.ObjectReference{Kind: "Node", Name: best}}, metav1.CreateOptions{})
			if err == nil {
				load[best]++
			}
		case p.Status.Phase != corev1.PodRunning:
			now := metav1.Now()
			p.Status.Phase = corev1.PodRunning
			p.Status.StartTime = &now
			p.Status.Conditions = []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			}
			if _, err := c.Admin.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				continue
			}
		}
	}
	return nil
}

func schedulable(n *corev1.Node, p *corev1.Pod) bool {
	for k, v := range p.Spec.NodeSelector {
		if n.Labels[k] != v {
			return false
		}
	}
	for _, taint := range n.Spec.Taints {
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tolerated := false
		for _, tol := range p.Spec.Tolerations {
			tolerated = tolerated || tol.ToleratesTaint(klog.Background(), &taint, false)
		}
		if !tolerated {
			return false
		}
	}
	return true
}

// AuditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	Stage      string `json:"stage"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
}

// Resource is group/resource[/subresource] ("" group as core).
func (e AuditEvent) Resource() string {
	if e.ObjectRef == nil {
		return ""
	}
	r := e.ObjectRef.Resource
	if e.ObjectRef.Subresource != "" {
		r += "/" + e.ObjectRef.Subresource
	}
	return e.ObjectRef.APIGroup + "/" + r
}

// Audit reads the audit log's completed requests made by user.
func (c *Cluster) Audit(t testing.TB, user string) []AuditEvent {
	t.Helper()
	f, err := os.Open(c.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log line: %v", err)
		}
		if e.User.Username == user && e.Stage == "ResponseComplete" {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Used summarises audit events as sorted "group/resource[/sub] verb" lines.
func Used(evs []AuditEvent) []string {
	set := map[string]bool{}
	for _, e := range evs {
		if e.ObjectRef != nil {
			set[e.Resource()+" "+e.Verb] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sortStrings(s []string) { sort.Strings(s) }
