package promcheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Paths of the assets, relative to this package.
const (
	assetDir       = "../prometheus"
	repoRoot       = "../.."
	runbookBaseURL = "https://github.com/hsm-agent/hsm-agent/blob/main/packaging/prometheus/RUNBOOK.md"
)

// prometheusOwn are names Prometheus itself provides.
var prometheusOwn = []string{"up"}

func TestParseNameList(t *testing.T) {
	t.Parallel()
	got, err := ParseNameList(strings.NewReader("# comment\n\nhsm_up\n  hsm_device_state \n"))
	if err != nil || !reflect.DeepEqual(got, []string{"hsm_up", "hsm_device_state"}) {
		t.Fatalf("ParseNameList = %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"hsm_up\nhsm up\n":       `line 2: "hsm up" is not a metric name`,
		"hsm_up\n\nhsm_up\n":     "line 3: hsm_up already listed on line 1",
		"hsm_up{device=\"a\"}\n": "is not a metric name",
	} {
		if _, err := ParseNameList(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNameList(%q) error = %v, want it to contain %q", in, err, want)
		}
	}
}

func TestExprMetricNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`hsm_up == 0`, []string{"hsm_up"}},
		{`hsm_up{device="a{b}", serial=~"x|y"} == 0 unless on (job, instance, device) (hsm_device_state{state=~"missing"} == 1)`,
			[]string{"hsm_device_state", "hsm_up"}},
		{`absent(up{job="hsm-agent"})`, []string{"up"}},
		{`time() - hsm_last_success_timestamp_seconds > 900`, []string{"hsm_last_success_timestamp_seconds"}},
		{`hsm_contract_expiry_timestamp_seconds - time() < 30 * 86400 and hsm_x - time() > 1e3`,
			[]string{"hsm_contract_expiry_timestamp_seconds", "hsm_x"}},
		{"sum by (desk, result) (rate(hsm_desk_deliveries_total{instance=~\"$instance\"}[$__rate_interval]))",
			[]string{"hsm_desk_deliveries_total"}},
		{`sum without(instance) (a) / ignoring(job) group_left(model, firmware) b offset 5m`, []string{"a", "b"}},
		{`max(x) by (device) or on() vector(0) > bool Inf`, []string{"x"}},
		{`count_values("version", hsm_agent_build_info) # a comment naming not_a_metric`, []string{"hsm_agent_build_info"}},
		{`label_replace(hsm_up, "dst", "$1", 'src', "(.*)")`, []string{"hsm_up"}},
		{`{__name__="hsm_token_flag", flag="user_pin_locked"}`, []string{"hsm_token_flag"}},
		{`${device} + min_over_time(hsm_outbox_pending[30m:1m])`, []string{"hsm_outbox_pending"}},
		{`topk(5, sum by(module)(hsm_unexpected_tokens))`, []string{"hsm_unexpected_tokens"}},
		{`vector(1)`, []string{}},
	} {
		got, err := ExprMetricNames(tc.expr)
		if err != nil {
			t.Errorf("ExprMetricNames(%q): %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExprMetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`hsm_up{device="a"`, `rate(x[5m)`, `x{a="b}`, `{__name__=~"hsm_.*"}`, `sum by (a x`} {
		if got, err := ExprMetricNames(bad); err == nil {
			t.Errorf("ExprMetricNames(%q) = %q, nil; want an error", bad, got)
		}
	}
}

func TestMissingFromExposition(t *testing.T) {
	t.Parallel()
	page := `# HELP hsm_up 1 if up.
# TYPE hsm_up gauge
hsm_up{device="a",serial="1"} 1
# HELP hsm_device_info Info.
# TYPE hsm_device_info gauge
# TYPE hsm_agent_build_info gauge
hsm_agent_build_info{goversion="go1.26",version="dev"} 1
hsm_desk_deliveries_total{desk="v",result="success"} 3
`
	missing, err := MissingFromExposition(strings.NewReader(page),
		[]string{"hsm_up", "hsm_device_info", "hsm_agent_build_info", "hsm_desk_deliveries_total", "hsm_token_flag"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"hsm_device_info", "hsm_token_flag"}; !reflect.DeepEqual(missing, want) {
		t.Errorf("missing = %q, want %q (a # TYPE line without samples counts as missing)", missing, want)
	}
	if _, err := MissingFromExposition(strings.NewReader("<html>not found</html>\n"), []string{"hsm_up"}); err == nil {
		t.Error("an HTML page was accepted as an exposition")
	}
	if _, err := MissingFromExposition(strings.NewReader("# only comments\n"), []string{"hsm_up"}); err == nil {
		t.Error("a page without samples was accepted")
	}
}

// lists returns the agent's names (metric-names.txt) and the case pipeline's
// (metric-names-cases.txt).
func lists(t *testing.T) (agent, cases []string) {
	t.Helper()
	agent, err := ReadNameList(filepath.Join(assetDir, "metric-names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cases, err = ReadNameList(filepath.Join(assetDir, "metric-names-cases.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(agent) == 0 { // the staging list (metric-names-cases.txt) may be empty
		t.Fatal("empty metric name list")
	}
	for _, n := range cases {
		for _, m := range agent {
			if n == m {
				t.Errorf("%s is in both metric-names.txt and metric-names-cases.txt", n)
			}
		}
	}
	return agent, cases
}

func set(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, n := range l {
			m[n] = true
		}
	}
	return m
}

// declaredRE finds metric names in Go code: every string literal that looks
// like an hsm_ metric name (in NewDesc calls, Opts.Name fields or constants).
var declaredRE = regexp.MustCompile(`"(hsm_[a-z0-9_:]+)"`)

// TestNameListsMatchCode keeps the allow-lists honest: every name in
// metric-names.txt is declared by the agent's Go code, and every hsm_ metric
// the code declares is in one of the lists (so the rules and dashboard may
// use it once it is listed).
func TestNameListsMatchCode(t *testing.T) {
	t.Parallel()
	agent, cases := lists(t)
	declared := map[string]string{}
	err := filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "packaging", "testdata", "bin", "dist", "build":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range declaredRE.FindAllStringSubmatch(string(b), -1) {
			declared[m[1]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range agent {
		if declared[n] == "" {
			t.Errorf("metric-names.txt lists %s, but no Go file outside packaging/ has the string %q: remove it, or move it to metric-names-cases.txt if it is not exported yet", n, n)
		}
	}
	listed := set(agent, cases)
	for n, path := range declared {
		if !listed[n] {
			t.Errorf("%s declares metric %s, which is in no packaging/prometheus/metric-names*.txt: add it to metric-names.txt (exported now) or metric-names-cases.txt (case pipeline, not wired yet)", path, n)
		}
	}
	for _, n := range cases {
		if declared[n] != "" {
			t.Logf("%s is exported now (%s): move it from metric-names-cases.txt to metric-names.txt and ship hsm-agent-cases.rules.yml", n, declared[n])
		}
	}
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T, name string) []rule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(assetDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", name)
	}
	return rules
}

// ruleSets: each rules file, its promtool test file and the names it may use.
func ruleSets(t *testing.T) []struct {
	file, tests string
	allowed     map[string]bool
} {
	agent, cases := lists(t)
	return []struct {
		file, tests string
		allowed     map[string]bool
	}{
		{"hsm-agent.rules.yml", "tests/hsm-agent.test.yml", set(agent, prometheusOwn)},
		{"hsm-agent-cases.rules.yml", "tests/hsm-agent-cases.test.yml", set(agent, cases, prometheusOwn)},
	}
}

func TestRulesUseOnlyListedMetrics(t *testing.T) {
	t.Parallel()
	for _, rs := range ruleSets(t) {
		for _, r := range readRules(t, rs.file) {
			names, err := ExprMetricNames(r.Expr)
			if err != nil {
				t.Errorf("%s: %s: %v", rs.file, r.Alert, err)
				continue
			}
			if len(names) == 0 {
				t.Errorf("%s: %s: expression selects no metric", rs.file, r.Alert)
			}
			for _, n := range names {
				if !rs.allowed[n] {
					t.Errorf("%s: alert %s uses %s, which the agent does not export (not in the metric-names list this file may use)", rs.file, r.Alert, n)
				}
			}
		}
	}
}

func TestRulesLabelsAnnotationsRunbook(t *testing.T) {
	t.Parallel()
	runbook, err := os.ReadFile(filepath.Join(assetDir, "RUNBOOK.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			headings[strings.TrimSpace(h)] = true
		}
	}
	alerts := map[string]string{}
	for _, rs := range ruleSets(t) {
		for _, r := range readRules(t, rs.file) {
			where := rs.file + ": " + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: recording rule %q: only alerting rules belong in this file", rs.file, r.Record)
				continue
			}
			if prev, dup := alerts[r.Alert]; dup {
				t.Errorf("%s: alert name also used in %s", where, prev)
			}
			alerts[r.Alert] = rs.file
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity label %q, want critical or warning", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if want := runbookBaseURL + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", where, r.Annotations["runbook_url"], want)
			}
			if !headings[r.Alert] {
				t.Errorf("%s: RUNBOOK.md has no section \"## %s\" for the runbook_url anchor", where, r.Alert)
			}
		}
	}
	for h := range headings {
		if alerts[h] == "" && !strings.HasPrefix(h, "First look") {
			t.Errorf("RUNBOOK.md section %q belongs to no alert", h)
		}
	}
}

type promtoolTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string           `yaml:"eval_time"`
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertHasFiringAndSilentTest: for each alert the promtool tests hold
// at least one evaluation where it fires and one where it must not.
func TestEveryAlertHasFiringAndSilentTest(t *testing.T) {
	t.Parallel()
	for _, rs := range ruleSets(t) {
		b, err := os.ReadFile(filepath.Join(assetDir, rs.tests))
		if err != nil {
			t.Fatal(err)
		}
		var pt promtoolTests
		if err := yaml.Unmarshal(b, &pt); err != nil {
			t.Fatalf("%s: %v", rs.tests, err)
		}
		if !reflect.DeepEqual(pt.RuleFiles, []string{"../" + rs.file}) {
			t.Errorf("%s: rule_files = %q, want [../%s]", rs.tests, pt.RuleFiles, rs.file)
		}
		fires, silent := map[string]int{}, map[string]int{}
		for _, tc := range pt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname]++
				} else {
					silent[a.Alertname]++
				}
			}
		}
		known := map[string]bool{}
		for _, r := range readRules(t, rs.file) {
			known[r.Alert] = true
			if fires[r.Alert] == 0 {
				t.Errorf("%s: no test where %s fires", rs.tests, r.Alert)
			}
			if silent[r.Alert] == 0 {
				t.Errorf("%s: no test where %s must stay silent (exp_alerts: [])", rs.tests, r.Alert)
			}
		}
		for name := range set(keys(fires), keys(silent)) {
			if !known[name] {
				t.Errorf("%s: tests alert %s, which %s does not define", rs.tests, name, rs.file)
			}
		}
	}
}

func keys(m map[string]int) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource map[string]any           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(assetDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)

// dashboardQueries returns every PromQL expression of the dashboard, keyed by
// where it is (panel title and refId, or template variable).
func dashboardQueries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	q := map[string]string{}
	for _, p := range flatten(d.Panels) {
		for _, tg := range p.Targets {
			q["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s string
		switch qq := v.Query.(type) {
		case string:
			s = qq
		case map[string]any:
			s, _ = qq["query"].(string)
		}
		m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil {
			t.Errorf("variable $%s: query %q is not label_values(SELECTOR, label)", v.Name, s)
			continue
		}
		q["variable $"+v.Name] = m[1]
	}
	return q
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	agent, cases := lists(t)
	allowed := set(agent, cases, prometheusOwn)
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard has no title or uid")
	}
	ids := map[int]string{}
	byTitle := map[string]string{}
	for _, p := range flatten(d.Panels) {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		byTitle[p.Title] = p.Type
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q: datasource %v, want uid ${datasource} (the dashboard's data source variable)", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q query %s: empty expression or datasource not ${datasource}", p.Title, tg.RefID)
			}
		}
	}
	for title, typ := range map[string]string{
		"Fleet":                  "table",
		"Device state":           "state-timeline",
		"Check latency":          "timeseries",
		"Module probe duration":  "timeseries",
		"Unexpected tokens":      "timeseries",
		"Open cases by severity": "timeseries",
		"Outbox pending":         "timeseries",
	} {
		if byTitle[title] != typ {
			t.Errorf("dashboard has no %s panel %q (have type %q)", typ, title, byTitle[title])
		}
	}
	used := map[string]bool{}
	for where, expr := range dashboardQueries(t, d) {
		names, err := ExprMetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(names) == 0 && !strings.Contains(expr, "vector(") {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !allowed[n] {
				t.Errorf("%s uses %s, which the agent does not export (not in metric-names*.txt)", where, n)
			}
		}
	}
	for _, n := range []string{"hsm_up", "hsm_device_state", "hsm_check_duration_seconds", "hsm_unexpected_tokens", "hsm_cases_open", "hsm_outbox_pending"} {
		if !used[n] {
			t.Errorf("dashboard does not use %s", n)
		}
	}
}

// TestDashboardQueriesParse runs every dashboard query, with Grafana's
// variables substituted, through promtool's real PromQL parser.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it (Debian: apt-get install -y prometheus); the dashboard queries cannot be checked without it")
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	varRE := regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
	q := dashboardQueries(t, readDashboard(t))
	where := make([]string, 0, len(q))
	for w := range q {
		where = append(where, w)
	}
	sort.Strings(where)
	var rules []map[string]string
	for i, w := range where {
		expr := varRE.ReplaceAllString(vars.Replace(q[w]), ".*")
		rules = append(rules, map[string]string{"record": "dashboard:query_" + strconv.Itoa(i), "expr": expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules on the dashboard queries (in order: %q): %v\n%s", where, err, out)
	}
}

// TestDashboardStateQueryTested: the state code query of the "Device state"
// panel (and the Fleet table's state column) is the one
// tests/dashboard.test.yml runs through promtool.
func TestDashboardStateQueryTested(t *testing.T) {
	t.Parallel()
	var timeline, fleet string
	for _, p := range flatten(readDashboard(t).Panels) {
		for _, tg := range p.Targets {
			switch {
			case p.Title == "Device state" && tg.RefID == "A":
				timeline = tg.Expr
			case p.Title == "Fleet" && tg.RefID == "C":
				fleet = tg.Expr
			}
		}
	}
	if timeline == "" || timeline != fleet {
		t.Fatalf("Device state query %q and Fleet state column query %q must be the same non-empty query", timeline, fleet)
	}
	b, err := os.ReadFile(filepath.Join(assetDir, "tests/dashboard.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var pt struct {
		Tests []struct {
			PromQLExprTest []struct {
				Expr string `yaml:"expr"`
			} `yaml:"promql_expr_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &pt); err != nil {
		t.Fatal(err)
	}
	if len(pt.Tests) == 0 || len(pt.Tests[0].PromQLExprTest) == 0 {
		t.Fatal("tests/dashboard.test.yml has no promql_expr_test")
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	want := norm(regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`).ReplaceAllString(timeline, ".*"))
	for _, e := range pt.Tests[0].PromQLExprTest {
		if norm(e.Expr) != want {
			t.Errorf("tests/dashboard.test.yml tests\n  %s\nbut the dashboard's state query (variables set to .*) is\n  %s", norm(e.Expr), want)
		}
	}
}
