using ScottPlot;

namespace Loom.Benchmarks;

/// <summary>The engine suite's pictures: decode tokens/s against batch size beside llama.cpp's figures from the same
/// sitting, and prefill GFLOP/s against the FMA peak measured in the same run.</summary>
internal static class EnginePlots
{
    public static void Draw(IReadOnlyList<EngineBenchmark.ModelRun> runs, LlamaCppLog? llama, double peakFlops, string prefix)
    {
        Color[] colors = [Colors.Blue, Colors.Orange, Colors.Green, Colors.Purple];
        var decode = runs.Select((r, i) => new LinePlot.Series($"Loom, {r.Title}", colors[i % colors.Length],
            r.Decode.Select(p => ((double)p.Batch, p.TokensPerSecond)).ToList())).ToList();
        if (llama is not null && llama.BatchedDecode.Count > 0)
            decode.Add(new LinePlot.Series("llama.cpp (llama-batched-bench), bf16", Colors.Red,
                llama.BatchedDecode.OrderBy(p => p.Batch).Select(p => ((double)p.Batch, p.TokensPerSecond)).ToList()));
        if (llama?.Find("F32", "tg64") is { } f32)
            decode.Add(new LinePlot.Series("llama.cpp (llama-bench tg64), f32", Colors.DarkRed, [(1, f32)]));
        if (llama?.Find("Q8_0", "tg64") is { } q8)
            decode.Add(new LinePlot.Series("llama.cpp (llama-bench tg64), Q8_0", Colors.Magenta, [(1, q8)]));
        string decodePath = $"{prefix}-decode-batch.png";
        LinePlot.Save(decodePath, "Decode tokens/s against batch size (2 threads)", "sequences in the batch",
            "generated tokens per second", decode, legend: Alignment.LowerRight);

        var prefill = runs.Where(r => r.Prefill.Count > 0).Select((r, i) => new LinePlot.Series($"Loom, {r.Title}",
            colors[i % colors.Length], r.Prefill.Select(p => ((double)p.Tokens, p.GflopsPerSecond)).ToList())).ToList();
        string prefillPath = $"{prefix}-prefill-peak.png";
        LinePlot.Save(prefillPath, "Prefill GFLOP/s against the machine's FMA peak", "prompt tokens in one prefill",
            "GFLOP/s (wall clock, all cores)", prefill, (peakFlops / 1e9, "measured f32 FMA peak, all cores"), legend: Alignment.LowerRight);
        Console.WriteLine($"plots: {decodePath}, {prefillPath}");
    }
}
