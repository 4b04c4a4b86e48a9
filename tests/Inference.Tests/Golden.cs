using System.Text.Json;
using Loom.Inference.Formats;
using Xunit.Abstractions;

namespace Loom.Inference.Tests;

/// <summary>A model folder written by tests/reference/make_golden.py with its golden logits.</summary>
internal sealed class Golden
{
    public required string Directory { get; init; }
    public required int[][] Prompts { get; init; }
    public required int DecodePrompt { get; init; }
    public required int[] DecodeTokens { get; init; }
    /// <summary>(prompt length, vocab) logits of every position for each prompt.</summary>
    public required float[][] Prefill { get; init; }
    /// <summary>(steps, vocab): step 0 after the prompt, step i after i decode tokens.</summary>
    public required float[] Decode { get; init; }

    public static readonly string Root = Path.Combine(AppContext.BaseDirectory, "golden", "models");
    public static readonly TheoryData<string> Names = new() { "llama_gqa_tied", "llama3_scaled_bf16", "qwen2_bias", "mistral_hd64" };

    public static string PathOf(string name) => Path.Combine(Root, name);

    public static Golden Load(string name)
    {
        string dir = PathOf(name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        var r = doc.RootElement;
        var prompts = r.GetProperty("prompts").EnumerateArray().Select(p => p.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        using var f = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        return new Golden
        {
            Directory = dir,
            Prompts = prompts,
            DecodePrompt = r.GetProperty("decode_prompt").GetInt32(),
            DecodeTokens = r.GetProperty("decode_tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            Prefill = prompts.Select((_, i) => f.ReadFloats($"prefill.{i}")).ToArray(),
            Decode = f.ReadFloats("decode.0"),
        };
    }
}

internal static class Compare
{
    /// <summary>How many elements of a and b differ in their bits (0: bitwise equal).</summary>
    public static int BitsDiffer(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(b.Length, a.Length);
        int n = 0;
        for (int i = 0; i < a.Length; i++) if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i])) n++;
        return n;
    }

    /// <summary>max|a-b| / max|b|: robust to near-zero entries of b.</summary>
    public static (double Rel, double MaxAbs, int At) RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(d)) return (double.NaN, double.NaN, i);
            if (d > maxDiff) { maxDiff = d; at = i; }
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return (maxDiff / Math.Max(maxRef, 1e-30), maxDiff, at);
    }

    public static void Close(ITestOutputHelper? log, string what, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance)
    {
        var (rel, abs, at) = RelativeError(actual, expected);
        string msg = $"{what}: max rel err {rel:E2} (max |diff| {abs:E2} at {at}: got {(at >= 0 ? actual[at] : 0)}, expected {(at >= 0 ? expected[at] : 0)}), tolerance {tolerance:E0}";
        log?.WriteLine(msg);
        Assert.True(rel <= tolerance, msg);
    }
}
