package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Target is what a metric should meet (issue #4). A target is judged on the
// median over runs, or, for an invariant, on every run.
type Target struct {
	Op    string  `json:"op"` // ">=", "<=" or "=="
	Value float64 `json:"value"`
	Every bool    `json:"every_run,omitempty"` // an invariant: every run must meet it
	Note  string  `json:"note,omitempty"`      // the condition the target is stated for
}

func (t *Target) met(v float64) bool {
	switch t.Op {
	case ">=":
		return v >= t.Value
	case "<=":
		return v <= t.Value
	default:
		return v == t.Value
	}
}

func (t *Target) String() string {
	op := map[string]string{">=": "≥", "<=": "≤", "==": "="}[t.Op]
	s := op + " " + trimFloat(t.Value)
	if t.Every {
		s += " every run"
	}
	return s
}

// Metric is one figure over the runs of a scenario.
type Metric struct {
	Name   string    `json:"-"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"` // one per run that measured it, in run order
	Median *float64  `json:"median"` // nil when no run measured it
	Min    *float64  `json:"min"`
	Max    *float64  `json:"max"`
	Target *Target   `json:"target,omitempty"`
	Pass   *bool     `json:"pass,omitempty"` // nil without a target; false for a target no run measured
}

func (m *Metric) finish() {
	m.Median, m.Min, m.Max, m.Pass = nil, nil, nil, nil
	if len(m.Values) == 0 {
		// A target nothing was measured against is not met: a run that did
		// no work must not pass for want of figures.
		if m.Target != nil {
			pass := false
			m.Pass = &pass
		}
		return
	}
	med, lo, hi := Median(m.Values), math.Inf(1), math.Inf(-1)
	for _, v := range m.Values {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	m.Median, m.Min, m.Max = &med, &lo, &hi
	if m.Target == nil {
		return
	}
	pass := m.Target.met(med)
	if m.Target.Every {
		for _, v := range m.Values {
			pass = pass && m.Target.met(v)
		}
	}
	m.Pass = &pass
}

// ScenarioReport is what one scenario measured over its runs.
type ScenarioReport struct {
	Name    string
	Params  map[string]any
	Runs    int
	Metrics []*Metric
	Notes   []string
	Error   string
}

// NewScenarioReport starts the report of scenario name.
func NewScenarioReport(name string, runs int, params map[string]any) *ScenarioReport {
	return &ScenarioReport{Name: name, Runs: runs, Params: params}
}

// metric returns the named metric, adding it (in order) if new.
func (r *ScenarioReport) metric(name, unit string) *Metric {
	if m := r.find(name); m != nil {
		return m
	}
	m := &Metric{Name: name, Unit: unit, Values: []float64{}}
	r.Metrics = append(r.Metrics, m)
	return m
}

// Add records one run's value of a metric. NaN (nothing measured) and
// infinities are left out.
func (r *ScenarioReport) Add(name, unit string, v float64) {
	m := r.metric(name, unit)
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		m.Values = append(m.Values, v)
	}
}

// Target sets a metric's target.
func (r *ScenarioReport) Target(name, unit string, t Target) { r.metric(name, unit).Target = &t }

// Invariant sets t as an every-run target of the named metric. It is meant
// to be called on the way out of a scenario, whatever ended it, so that a
// run that broke an invariant is judged even when a later run failed. After
// a failure (failed) only a metric that some run measured gets the target:
// one that no run reached is not reported broken for want of figures, since
// the scenario's error already says why they are missing.
func (r *ScenarioReport) Invariant(name, unit string, t Target, failed bool) {
	t.Every = true
	if failed {
		if m := r.find(name); m == nil || len(m.Values) == 0 {
			return
		}
	}
	r.Target(name, unit, t)
}

// find returns the named metric, or nil.
func (r *ScenarioReport) find(name string) *Metric {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Notef adds a line of explanation to the report, once.
func (r *ScenarioReport) Notef(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	for _, n := range r.Notes {
		if n == s {
			return
		}
	}
	r.Notes = append(r.Notes, s)
}

// Finish computes medians, spreads and verdicts.
func (r *ScenarioReport) Finish() {
	for _, m := range r.Metrics {
		m.finish()
	}
}

// MarshalJSON writes metrics as an object keyed by name, for scripts.
func (r *ScenarioReport) MarshalJSON() ([]byte, error) {
	metrics := make(map[string]*Metric, len(r.Metrics))
	order := make([]string, len(r.Metrics))
	for i, m := range r.Metrics {
		metrics[m.Name] = m
		order[i] = m.Name
	}
	return json.Marshal(struct {
		Params      map[string]any     `json:"params"`
		Runs        int                `json:"runs"`
		Metrics     map[string]*Metric `json:"metrics"`
		MetricOrder []string           `json:"metric_order"`
		Notes       []string           `json:"notes"`
		Error       string             `json:"error,omitempty"`
	}{r.Params, r.Runs, metrics, order, nonNil(r.Notes), r.Error})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Report is the whole output of a benchmark run.
type Report struct {
	Env
	Runs      int
	Scenarios []*ScenarioReport
}

// Counts returns how many targets were met and missed, and how many
// invariants (every-run targets) were broken, over all scenarios. A target
// that no run measured is missed (Finish fails it), and so is an invariant
// broken.
func (r *Report) Counts() (met, missed, broken int) {
	for _, s := range r.Scenarios {
		for _, m := range s.Metrics {
			if m.Pass == nil {
				continue
			}
			switch {
			case *m.Pass:
				met++
			case m.Target.Every:
				broken++
				missed++
			default:
				missed++
			}
		}
	}
	return met, missed, broken
}

// MarshalJSON writes one object: the environment, then the scenarios keyed
// by name.
func (r *Report) MarshalJSON() ([]byte, error) {
	sc := make(map[string]*ScenarioReport, len(r.Scenarios))
	order := make([]string, len(r.Scenarios))
	for i, s := range r.Scenarios {
		sc[s.Name] = s
		order[i] = s.Name
	}
	met, missed, broken := r.Counts()
	return json.Marshal(struct {
		Env
		Runs             int                        `json:"runs"`
		Scenarios        map[string]*ScenarioReport `json:"scenarios"`
		ScenarioOrder    []string                   `json:"scenario_order"`
		TargetsMet       int                        `json:"targets_met"`
		TargetsMissed    int                        `json:"targets_missed"`
		InvariantsBroken int                        `json:"invariants_broken"`
	}{r.Env, r.Runs, sc, order, met, missed, broken})
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "kimura-bench  %s  %s  %s × %d cores  load average %s  node built with %s  runs %d\n\n",
		r.Date, r.OS, r.CPU, r.Cores, r.LoadAvg, r.GoVersion, r.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\tmedian\tmin – max\tunit\ttarget\tresult\t")
	for _, s := range r.Scenarios {
		for _, m := range s.Metrics {
			med, spread := "–", "–"
			if m.Median != nil {
				med = formatJudged(*m.Median, m.Unit, m.Target)
				spread = formatJudged(*m.Min, m.Unit, m.Target) + " – " + formatJudged(*m.Max, m.Unit, m.Target)
			}
			target, result := "", ""
			if m.Target != nil {
				target = m.Target.String()
				switch {
				case m.Pass == nil:
					result = "n/a"
				case *m.Pass:
					result = "pass"
				case len(m.Values) == 0:
					result = "FAIL (unmeasured)"
				default:
					result = "FAIL"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name, m.Name, med, spread, m.Unit, target, result)
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\tERROR\t\t\t\t\t\t\n", s.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		if len(s.Notes) == 0 && s.Error == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", s.Name, formatParams(s.Params))
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	met, missed, broken := r.Counts()
	fmt.Fprintf(w, "\ntargets met %d, missed %d (invariants broken %d)\n", met, missed, broken)
	return nil
}

func formatParams(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, p[k])
	}
	return strings.Join(parts, " ")
}

// unitDecimals is how many decimals a figure in unit is printed with; a
// unit not listed is a count or a rate, printed whole with thousands
// separators.
var unitDecimals = map[string]int{"ms": 1, "s": 3, "MB": 1, "ratio": 2}

// formatDecimals prints v with d decimals, and counts and rates with
// thousands separators.
func formatDecimals(v float64, unit string, d int) string {
	s := strconv.FormatFloat(v, 'f', d, 64)
	if _, ok := unitDecimals[unit]; ok {
		return s
	}
	return groupThousands(s)
}

// maxExtraDecimals bounds the decimals formatJudged adds.
const maxExtraDecimals = 6

// formatJudged prints v with the precision its unit deserves, and more
// decimals where the rounded figure would sit on the other side of t (if
// any) than v does: a ratio of 0.5962 against ≥ 0.6 prints 0.596, not a
// 0.60 beside its FAIL.
func formatJudged(v float64, unit string, t *Target) string {
	d := unitDecimals[unit]
	s := formatDecimals(v, unit, d)
	for extra := 1; t != nil && extra <= maxExtraDecimals; extra++ {
		shown, err := strconv.ParseFloat(strconv.FormatFloat(v, 'f', d+extra-1, 64), 64)
		if err != nil || t.met(shown) == t.met(v) {
			break
		}
		s = formatDecimals(v, unit, d+extra)
	}
	return s
}

// groupThousands puts thousands separators in the whole part of a number
// formatted by strconv.
func groupThousands(s string) string {
	sign, digits := "", s
	if strings.HasPrefix(s, "-") {
		sign, digits = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(digits, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return s
	}
	if hasFrac {
		frac = "." + frac
	}
	return sign + thousands(n) + frac
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) >= 1000 {
		return thousands(int64(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
