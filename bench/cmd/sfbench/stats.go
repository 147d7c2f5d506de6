package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// dist summarises the samples of one figure: the median and the range.
type dist struct {
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
}

func newDist(xs []float64) dist {
	d := dist{Samples: append([]float64(nil), xs...)}
	if len(xs) == 0 {
		d.Median, d.Min, d.Max = math.NaN(), math.NaN(), math.NaN()
		return d
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	d.Min, d.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		d.Median = s[n/2]
	} else {
		d.Median = (s[n/2-1] + s[n/2]) / 2
	}
	return d
}

// percentile is the nearest-rank percentile p (0–100) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// formatValue prints a measurement in its unit, times scaled to ms or s.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "s":
		switch {
		case v < 0.001:
			return fmt.Sprintf("%.0f µs", v*1e6)
		case v < 1:
			return fmt.Sprintf("%.1f ms", v*1e3)
		default:
			return fmt.Sprintf("%.2f s", v)
		}
	case "builds":
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g %s", v, unit)
	}
}

func formatRatio(d dist) string {
	if math.IsNaN(d.Median) {
		return "–"
	}
	return fmt.Sprintf("%s [%s–%s]", ratioString(d.Median), ratioString(d.Min), ratioString(d.Max))
}

func ratioString(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.2f", r)
	}
}

// MarshalJSON writes NaN and infinities (no samples, a zero baseline) as
// null, which JSON can carry.
func (d dist) MarshalJSON() ([]byte, error) {
	num := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	samples := make([]any, len(d.Samples))
	for i, v := range d.Samples {
		samples[i] = num(v)
	}
	return json.Marshal(map[string]any{"samples": samples, "median": num(d.Median), "min": num(d.Min), "max": num(d.Max)})
}
