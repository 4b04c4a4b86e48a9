using System.Diagnostics;
using ScottPlot;

namespace Loom.Benchmarks;

/// <summary>Benchmark line plots drawn with ScottPlot: labelled axes with units, a legend, and a title that names the
/// run (what was measured, when, at which commit).</summary>
internal static class LinePlot
{
    /// <summary>One named series of (x, y) points.</summary>
    public sealed record Series(string Name, Color Color, IReadOnlyList<(double X, double Y)> Points);

    /// <summary>Writes a PNG of the series, with an optional dashed horizontal reference line.</summary>
    public static void Save(string path, string title, string xLabel, string yLabel, IReadOnlyList<Series> series,
        (double Y, string Name)? reference = null, int width = 900, int height = 450, Alignment legend = Alignment.UpperLeft)
    {
        var plot = new Plot();
        foreach (var s in series)
        {
            var line = plot.Add.Scatter(s.Points.Select(p => p.X).ToArray(), s.Points.Select(p => p.Y).ToArray());
            line.LegendText = s.Name;
            line.Color = s.Color;
            line.MarkerSize = s.Points.Count <= 8 ? 7 : 0; // few points: show where they were measured
            line.LineWidth = 2;
        }
        if (reference is { } r)
        {
            var h = plot.Add.HorizontalLine(r.Y);
            h.LegendText = r.Name;
            h.Color = Colors.Gray;
            h.LinePattern = LinePattern.Dashed;
        }
        plot.Title($"{title}\n{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, commit {Commit()}");
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(legend);
        plot.Axes.AutoScale();
        var limits = plot.Axes.GetLimits();
        if (series.All(s => s.Points.All(p => p.Y >= 0)))
            plot.Axes.SetLimitsY(0, limits.Top); // a y axis from zero, so heights compare
        plot.SavePng(path, width, height);
    }

    /// <summary>The checkout's commit (short), or "unknown" outside a git checkout.</summary>
    internal static string Commit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, RedirectStandardError = true })!;
            string sha = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 && sha.Length > 0 ? sha : "unknown";
        }
        catch (System.ComponentModel.Win32Exception) { return "unknown"; }
    }
}
