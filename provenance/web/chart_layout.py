"""Where things sit on the temperature chart and in which colours.

The viewBox geometry (about CSS px on a 390 px phone: the plot area, font size, line gaps,
legend rows, the room under a cold peak), the smallest mark that still shows, how many dots
and axis steps to aim for, and the colours, chosen to hold up in sunlight (dark ink, tints
with dark edges). Every other chart module draws in these units; ``docs/chart.md`` gives the
reasons. Constants only.
"""

from __future__ import annotations

# --- layout, in viewBox units (about CSS px on a 390 px phone) ----------------------------------

WIDTH = 360
LEFT, RIGHT, TOP = 42, 350, 22  # plot area; the y labels sit left of LEFT
PLOT_HEIGHT = 130
BOTTOM = TOP + PLOT_HEIGHT
FONT = 12  # px; text widths below are estimated from it
LINE_GAP = 13  # between the time and the date line of an x label
LEGEND_ROW = 18
LABEL_ROOM = 20  # under a cold peak, for its marker and value
MIN_MARK = 1.5  # narrowest excursion or gap, so that a short one is still visible
MAX_DOTS = 20  # lone readings drawn as circles; more stay in the line's path
Y_INTERVALS = 5  # aim for about this many steps on the y-axis
X_INTERVALS = 5  # at most this many steps on the x-axis

# Colours that hold up in sunlight: dark ink, tints with dark edges.
INK = "#1a1a1a"
MUTED = "#595959"
GRID = "#d0d0d0"
BAND_FILL = "#d4edda"
BAND_EDGE = "#1e6b34"
HOT = "#b00020"
HOT_FILL = "#f6c4c9"
HATCH_INK = "#707070"
HATCH_BACK = "#ececec"
MINUS = "\u2212"  # a real minus sign in numbers on the chart
