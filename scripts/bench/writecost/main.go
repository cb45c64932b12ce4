// writecost measures the CPU that kube-apiserver and etcd spend per request on each way
// ecr-refresh could write its pull Secret, so the server's share of a rotating pass is known.
// Run by scripts/bench/writecost.sh against its own test servers. Stdlib only.
//
// It creates N namespaces with a Secret for the apply candidates and N for the update-type
// ones, then runs every candidate once per round (round-robin, so the machine's noise hits them
// alike) and prints, per candidate, the medians over the rounds as one tab-separated line:
// label, candidate, apiserver CPU-ms/req, etcd CPU-ms/req, wall s, answers.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	server = flag.String("server", os.Getenv("ECR_REFRESH_TEST_APISERVER"), "kube-apiserver URL")
	token  = flag.String("token", os.Getenv("ECR_REFRESH_TEST_ADMIN_TOKEN"), "admin bearer token")
	runDir = flag.String("run", os.Getenv("ECR_REFRESH_TEST_RUN_DIR"), "testenv run dir (kube-apiserver.pid, etcd.pid)")
	n      = flag.Int("n", 2000, "Secrets per candidate")
	reps   = flag.Int("reps", 3, "measured rounds (after one warm-up round)")
	label  = flag.String("label", "", "first column of the output, e.g. the server version")
)

// The candidates, in round order. ssa-noop re-applies what ssa wrote just before it.
var candidates = []string{"get", "ssa", "ssa-noop", "jp-label", "jp-rv", "merge", "put"}

const (
	secretName = "awsecr-cred"
	labelKey   = "app.kubernetes.io/managed-by"
	host       = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
	// ecr-refresh's default --concurrency.
	concurrency = 16
	// /proc/<pid>/stat counts CPU time in USER_HZ ticks, 100 a second on Linux.
	msPerTick = 10
)

var client = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // loopback test server, self-signed
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: concurrency,
	},
	Timeout: time.Minute,
}

type request struct {
	method, path, ctype string
	body                []byte
	rv                  *string // where the answer's resourceVersion goes (nil: nowhere)
}

type answer struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// run sends the requests from `concurrency` workers and counts the answers by status code.
func run(reqs []request) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	next := int64(-1)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(atomic.AddInt64(&next, 1))
				if k >= len(reqs) {
					return
				}
				code := send(reqs[k])
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return codes
}

func send(r request) int {
	req, err := http.NewRequest(r.method, *server+r.path, bytes.NewReader(r.body))
	if err != nil {
		die(err)
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	req.Header.Set("Accept", "application/json")
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "writecost:", err)
		return 0
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 300 && r.rv != nil {
		var a answer
		if json.Unmarshal(body, &a) == nil {
			*r.rv = a.Metadata.ResourceVersion
		}
	}
	return resp.StatusCode
}

// content is one token's worth of Secret: what a rotating pass writes to every namespace.
type content struct {
	data string // base64 .dockerconfigjson
	ann  map[string]string
}

func newContent() content {
	// Real ECR passwords are ~2,000 characters, as in bench.py's rotating stand-in; the size
	// matters for the server's work.
	raw := make([]byte, 1500)
	if _, err := rand.Read(raw); err != nil {
		die(err)
	}
	pw := base64.URLEncoding.EncodeToString(raw)
	auth := base64.StdEncoding.EncodeToString([]byte("AWS:" + pw))
	cfg := fmt.Sprintf(`{"auths":{%q:{"username":"AWS","password":%q,"auth":%q}}}`, host, pw, auth)
	return content{
		data: base64.StdEncoding.EncodeToString([]byte(cfg)),
		ann: map[string]string{
			"ecr-refresh/expires-at": time.Now().Add(12 * time.Hour).UTC().Format(time.RFC3339),
			"ecr-refresh/registries": host,
			"ecr-refresh/request":    "region=eu-west-1;registries=123456789012;role=",
		},
	}
}

func mustJSON(v interface{}) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		die(err)
	}
	return b
}

type obj = map[string]interface{}

func secret(ns string, c content, rv string) obj {
	md := obj{"name": secretName, "namespace": ns, "labels": obj{labelKey: "ecr-refresh"}, "annotations": c.ann}
	if rv != "" {
		md["resourceVersion"] = rv
	}
	return obj{"apiVersion": "v1", "kind": "Secret", "metadata": md,
		"type": "kubernetes.io/dockerconfigjson", "data": obj{".dockerconfigjson": c.data}}
}

// jsonPatch: the guard op, the data, then one add per annotation, so annotations others put on
// the Secret survive.
func jsonPatch(guard obj, c content) []byte {
	ops := []obj{guard, {"op": "replace", "path": "/data", "value": obj{".dockerconfigjson": c.data}}}
	keys := make([]string, 0, len(c.ann))
	for k := range c.ann {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ops = append(ops, obj{"op": "add", "path": "/metadata/annotations/" + strings.ReplaceAll(k, "/", "~1"), "value": c.ann[k]})
	}
	return mustJSON(ops)
}

// Apply candidates write namespaces wc-a-*, update-type ones wc-b-*: after an update-type write
// under the field manager, the next apply of changed fields conflicts.
func nsName(cand string, i int) string {
	if strings.HasPrefix(cand, "ssa") || cand == "get" {
		return fmt.Sprintf("wc-a-%d", i)
	}
	return fmt.Sprintf("wc-b-%d", i)
}

func secretPath(ns string) string { return "/api/v1/namespaces/" + ns + "/secrets/" + secretName }

const fm = "?fieldManager=ecr-refresh"

func build(cand string, i int, c content, rvs []string) request {
	ns := nsName(cand, i)
	p := secretPath(ns)
	switch cand {
	case "get":
		return request{"GET", p, "", nil, nil}
	case "ssa", "ssa-noop":
		return request{"PATCH", p + fm, "application/apply-patch+yaml", mustJSON(secret(ns, c, "")), nil}
	case "jp-label":
		guard := obj{"op": "test", "path": "/metadata/labels/" + strings.ReplaceAll(labelKey, "/", "~1"), "value": "ecr-refresh"}
		return request{"PATCH", p + fm, "application/json-patch+json", jsonPatch(guard, c), &rvs[i]}
	case "jp-rv":
		guard := obj{"op": "test", "path": "/metadata/resourceVersion", "value": rvs[i]}
		return request{"PATCH", p + fm, "application/json-patch+json", jsonPatch(guard, c), &rvs[i]}
	case "merge":
		body := obj{"metadata": obj{"annotations": c.ann}, "data": obj{".dockerconfigjson": c.data}}
		return request{"PATCH", p + fm, "application/merge-patch+json", mustJSON(body), &rvs[i]}
	case "put":
		return request{"PUT", p + fm, "application/json", mustJSON(secret(ns, c, rvs[i])), &rvs[i]}
	}
	panic("unknown candidate " + cand)
}

// setup creates the namespaces and applies a Secret into each; rvs gets the wc-b-* versions.
func setup(rvs []string) {
	var nss, secrets []request
	c := newContent()
	for _, r := range []string{"a", "b"} {
		for i := 0; i < *n; i++ {
			ns := fmt.Sprintf("wc-%s-%d", r, i)
			nss = append(nss, request{"POST", "/api/v1/namespaces", "application/json",
				mustJSON(obj{"apiVersion": "v1", "kind": "Namespace", "metadata": obj{"name": ns}}), nil})
			s := request{"PATCH", secretPath(ns) + fm + "&force=true", "application/apply-patch+yaml", mustJSON(secret(ns, c, "")), nil}
			if r == "b" {
				s.rv = &rvs[i]
			}
			secrets = append(secrets, s)
		}
	}
	check("namespaces", run(nss), 201, 409)
	check("secrets", run(secrets), 200, 201)
}

func check(what string, codes map[int]int, ok ...int) {
	for code := range codes {
		good := false
		for _, o := range ok {
			good = good || code == o
		}
		if !good {
			die(fmt.Errorf("setup of %s answered %s", what, fmtCodes(codes)))
		}
	}
}

func fmtCodes(codes map[int]int) string {
	var ks []int
	for k := range codes {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%d×%d", k, codes[k])) // 0: no answer
	}
	return strings.Join(out, " ")
}

// ticks is the CPU time (user + system, all threads) the process has used.
func ticks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		die(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:]) // comm may hold spaces
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// pidOf reads testenv's pid file and checks it names the server itself, not a wrapper.
func pidOf(name string) int {
	b, err := os.ReadFile(*runDir + "/" + name + ".pid")
	if err != nil {
		die(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		die(err)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	// comm is the executable's name cut to 15 bytes, e.g. "kube-apiserver-" for kube-apiserver-1.20.2-r2.
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), name) {
		die(fmt.Errorf("pid %d from %s.pid is %q, not %s", pid, name, strings.TrimSpace(string(comm)), name))
	}
	return pid
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "writecost:", err)
	os.Exit(1)
}

func main() {
	flag.Parse()
	if *server == "" || *token == "" || *runDir == "" || *n < 1 || *reps < 1 {
		die(fmt.Errorf("need -server, -token, -run (or testenv's env.sh), -n >= 1 and -reps >= 1"))
	}
	apiPid, etcdPid := pidOf("kube-apiserver"), pidOf("etcd")
	rvs := make([]string, *n) // wc-b-* Secrets' resourceVersions, kept current from each answer
	setup(rvs)

	type sample struct{ api, etcd, wall []float64 }
	samples := map[string]*sample{}
	codes := map[string]map[int]int{}
	for _, c := range candidates {
		samples[c], codes[c] = &sample{}, map[int]int{}
	}
	var last content
	// Round 0 warms up (connections, caches, the first update-type write of each Secret) and is
	// not counted.
	for round := 0; round <= *reps; round++ {
		for _, cand := range candidates {
			c := newContent()
			switch cand {
			case "ssa":
				last = c
			case "ssa-noop":
				c = last
			}
			reqs := make([]request, *n)
			for i := range reqs {
				reqs[i] = build(cand, i, c, rvs)
			}
			// Let the previous batch's trailing work (etcd's fsyncs, Go's GC) land before counting.
			time.Sleep(500 * time.Millisecond)
			a0, e0, t0 := ticks(apiPid), ticks(etcdPid), time.Now()
			got := run(reqs)
			wall := time.Since(t0).Seconds()
			api := float64((ticks(apiPid)-a0)*msPerTick) / float64(*n)
			etcd := float64((ticks(etcdPid)-e0)*msPerTick) / float64(*n)
			fmt.Fprintf(os.Stderr, "writecost: %s round %d/%d %-9s api %.2f etcd %.2f ms/req, %.2f s, %s\n",
				*label, round, *reps, cand, api, etcd, wall, fmtCodes(got))
			if round == 0 {
				continue
			}
			s := samples[cand]
			s.api, s.etcd, s.wall = append(s.api, api), append(s.etcd, etcd), append(s.wall, wall)
			for k, v := range got {
				codes[cand][k] += v
			}
		}
	}
	for _, cand := range candidates {
		s := samples[cand]
		fmt.Printf("%s\t%s\t%.2f\t%.2f\t%.2f\t%s\n", *label, cand, median(s.api), median(s.etcd), median(s.wall), fmtCodes(codes[cand]))
	}
}
