package reports

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// TestChartMarkLabelsDoNotOverlap: marks close together get their labels
// on separate rows.
func TestChartMarkLabelsDoNotOverlap(t *testing.T) {
	svg := renderChart(steps.Evidence{Title: "t",
		Series: []steps.Series{{Points: []float64{0, 1, 100, 2}}},
		Marks:  []steps.Mark{{X: 40, Label: "failover triggered"}, {X: 41, Label: "DNS switch"}, {X: 90, Label: "later"}}})
	ys := regexp.MustCompile(`class="marklabel" x="[0-9.]+" y="(\d+)"`).FindAllStringSubmatch(svg, -1)
	require.Len(t, ys, 3)
	y0, _ := strconv.Atoi(ys[0][1])
	y1, _ := strconv.Atoi(ys[1][1])
	y2, _ := strconv.Atoi(ys[2][1])
	assert.NotEqual(t, y0, y1, "close marks get separate rows")
	assert.Equal(t, y0, y2, "a distant mark reuses the first row")
}

func TestChartWithoutPoints(t *testing.T) {
	assert.Contains(t, renderChart(steps.Evidence{Title: "empty"}), "no data points")
}
