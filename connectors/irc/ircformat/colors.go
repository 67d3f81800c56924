package ircformat

import (
	"strconv"
	"strings"
)

// palette maps mIRC colour numbers 0–98 to hex colours: the 16 standard
// colours followed by the 83 extended ones, as listed on
// https://modern.ircdocs.horse/formatting.html#colors-16-98 (99 is
// "default" and has no colour).
var palette = [99]string{
	"#ffffff", "#000000", "#00007f", "#009300", "#ff0000", "#7f0000", "#9c009c", "#fc7f00",
	"#ffff00", "#00fc00", "#009393", "#00ffff", "#0000fc", "#ff00ff", "#7f7f7f", "#d2d2d2",
	"#470000", "#472100", "#474700", "#324700", "#004700", "#00472c", "#004747", "#002747",
	"#000047", "#2e0047", "#470047", "#47002a", "#740000", "#743a00", "#747400", "#517400",
	"#007400", "#007449", "#007474", "#004074", "#000074", "#4b0074", "#740074", "#740045",
	"#b50000", "#b56300", "#b5b500", "#7db500", "#00b500", "#00b571", "#00b5b5", "#0063b5",
	"#0000b5", "#7500b5", "#b500b5", "#b5006b", "#ff0000", "#ff8c00", "#ffff00", "#b2ff00",
	"#00ff00", "#00ffa0", "#00ffff", "#008cff", "#0000ff", "#a500ff", "#ff00ff", "#ff0098",
	"#ff5959", "#ffb459", "#ffff71", "#cfff60", "#6fff6f", "#65ffc9", "#6dffff", "#59b4ff",
	"#5959ff", "#c459ff", "#ff66ff", "#ff59bc", "#ff9c9c", "#ffd39c", "#ffff9c", "#e2ff9c",
	"#9cff9c", "#9cffdb", "#9cffff", "#9cd3ff", "#9c9cff", "#dc9cff", "#ff9cff", "#ff94d3",
	"#000000", "#131313", "#282828", "#363636", "#4d4d4d", "#656565", "#818181", "#9f9f9f",
	"#bcbcbc", "#e2e2e2", "#ffffff",
}

// colorHex returns the "#rrggbb" form of a style colour (a two-digit mIRC
// number or already a hex colour).
func colorHex(c string) string {
	if strings.HasPrefix(c, "#") {
		return c
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 0 || n >= len(palette) {
		return "#000000"
	}
	return palette[n]
}

// exactMIRC returns the number of the mIRC colour (0–98) whose value is
// the hex colour c, or "".
func exactMIRC(c string) string {
	for i, v := range palette {
		if v == c {
			return twoDigits(i)
		}
	}
	return ""
}

// cssNames covers the colour keywords people actually type into <font color>.
var cssNames = map[string]string{
	"white": "#ffffff", "black": "#000000", "red": "#ff0000", "green": "#008000",
	"lime": "#00ff00", "blue": "#0000ff", "navy": "#000080", "yellow": "#ffff00",
	"orange": "#ffa500", "purple": "#800080", "magenta": "#ff00ff", "fuchsia": "#ff00ff",
	"pink": "#ffc0cb", "cyan": "#00ffff", "aqua": "#00ffff", "teal": "#008080",
	"maroon": "#800000", "brown": "#a52a2a", "olive": "#808000", "gray": "#808080",
	"grey": "#808080", "silver": "#c0c0c0", "lightgray": "#d3d3d3", "lightgrey": "#d3d3d3",
	"darkgray": "#a9a9a9", "darkgrey": "#a9a9a9",
}

// parseCSSColor parses "#rgb", "#rrggbb" or a basic colour keyword.
func parseCSSColor(v string) (r, g, b int, ok bool) {
	v = strings.ToLower(strings.TrimSpace(v))
	if named, found := cssNames[v]; found {
		v = named
	}
	if !strings.HasPrefix(v, "#") {
		return 0, 0, 0, false
	}
	h := v[1:]
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	if len(h) != 6 {
		return 0, 0, 0, false
	}
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return 0, 0, 0, false
	}
	return int(n >> 16), int(n >> 8 & 0xff), int(n & 0xff), true
}

// nearestMIRC returns the two-digit number of the standard (0–15) mIRC
// colour closest to the CSS colour v, or "" if v is not a colour.
func nearestMIRC(v string) string {
	r, g, b, ok := parseCSSColor(v)
	if !ok {
		return ""
	}
	best, bestDist := 0, -1
	for i := 0; i < 16; i++ {
		pr, pg, pb, _ := parseCSSColor(palette[i])
		// "Redmean" weighted distance: cheap and closer to perception
		// than plain Euclidean RGB.
		rm := (r + pr) / 2
		dr, dg, db := r-pr, g-pg, b-pb
		d := (512+rm)*dr*dr>>8 + 4*dg*dg + (767-rm)*db*db>>8
		if bestDist < 0 || d < bestDist {
			best, bestDist = i, d
		}
	}
	return twoDigits(best)
}

func twoDigits(n int) string {
	return string([]byte{byte('0' + n/10), byte('0' + n%10)})
}
