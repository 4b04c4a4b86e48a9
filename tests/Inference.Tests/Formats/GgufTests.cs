using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Formats;

/// <summary>GGUF files written from a golden model as llama.cpp's converter writes them (q/k rows permuted, llama.cpp's
/// tensor names, F32 / F16 / Q8_0), loaded from a folder holding only the .gguf: the same model as the safetensors load.</summary>
public sealed class GgufTests(ITestOutputHelper log) : IDisposable
{
    private const string Name = "llama_gqa_tied";
    private readonly string _dir = Directory.CreateTempSubdirectory("loom-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteModel(GgufType type, Action<List<(string Key, uint Type, byte[] Value)>>? edit = null)
    {
        GgufTestWriter.Write(Path.Combine(_dir, "model.gguf"), Golden.PathOf(Name), type, edit);
        return _dir;
    }

    private static Transformer OpenFolder(string dir, WeightFormat format = WeightFormat.Auto) =>
        new(ModelWeights.Load(dir, ModelConfig.Load(dir), format), new CpuKernels(), maxContext: 64);

    [Fact]
    public void ConfigComesFromTheMetadata()
    {
        var expected = ModelConfig.Load(Golden.PathOf(Name));
        var c = ModelConfig.Load(WriteModel(GgufType.F32));
        Assert.Equal(expected with { EosTokenIds = [], BosTokenId = null, RopeScaling = null }, c with { EosTokenIds = [], BosTokenId = null });
        Assert.Equal([318], c.EosTokenIds);
        Assert.True(c.TieWordEmbeddings);
    }

    [Fact]
    public void F32FileGivesTheSafetensorsLogitsExactly()
    {
        var g = Golden.Load(Name);
        using var gguf = OpenFolder(WriteModel(GgufType.F32));
        using var st = GoldenLogitsTests.Open(Name);
        Assert.NotEqual(1, ModelWeights.GgufSourceRow(1, 64, 4));   // the stored q rows really are permuted
        foreach (var p in g.Prompts)
        {
            var a = GoldenLogitsTests.PrefillAll(gguf, p);
            Compare.Close(log, "gguf f32 vs safetensors f32", a, GoldenLogitsTests.PrefillAll(st, p), 0);
            Compare.Close(log, "gguf f32 vs the oracle", a, g.Prefill[Array.IndexOf(g.Prompts, p)], 1e-4);
        }
    }

    [Fact]
    public void WithoutUndoingThePermutationTheLogitsWouldDiffer()
    {
        // the permutation is no identity for these heads (hd 16): a loader that skipped it, or undid it the wrong way
        // round, would read different q/k rows
        var rows = Enumerable.Range(0, 64).Select(r => ModelWeights.GgufSourceRow(r, 64, 4)).ToArray();
        Assert.Equal(Enumerable.Range(0, 64), rows.Order());
        var permuted = GgufTestWriter.Permute(Enumerable.Range(0, 64).Select(i => (float)i).ToArray(), 64, 1, 4);
        for (int r = 0; r < 64; r++) Assert.Equal(r, permuted[rows[r]]);
        Assert.Contains(rows.Select((s, r) => s != r), x => x);
    }

    [Fact]
    public void F16FileIsWithinF16RoundingOfTheOracle()
    {
        var g = Golden.Load(Name);
        using var m = OpenFolder(WriteModel(GgufType.F16));
        Assert.Equal(WeightType.F32, m.Weights.Layers[0].Q.Weight.Type);
        Compare.Close(log, "gguf f16 vs the oracle", GoldenLogitsTests.PrefillAll(m, g.Prompts[0]), g.Prefill[0], 5e-3);
    }

    [Fact]
    public void Q8FileLoadsBlockForBlock()
    {
        var g = Golden.Load(Name);
        string dir = WriteModel(GgufType.Q8_0);
        using var m = OpenFolder(dir);
        var q = m.Weights.Layers[1].Q.Weight;
        Assert.Equal(WeightType.Q8, q.Type);
        Assert.Equal(WeightType.Q8, m.Weights.LmHead.Type);
        // every value of the stored blocks, as int8 × f16 scale, at its HF place
        using (var f = GgufFile.Open(Path.Combine(dir, "model.gguf")))
        {
            var t = f.Tensor("blk.1.attn_q.weight");
            unsafe
            {
                byte* p = f.Pointer(t);
                for (int r = 0; r < q.Rows; r++)
                {
                    byte* row = p + (long)ModelWeights.GgufSourceRow(r, q.Rows, m.Config.NumHeads) * (q.Cols / 32) * 34;
                    for (int k = 0; k < q.Cols; k++)
                    {
                        byte* blk = row + k / 32 * 34;
                        Assert.Equal(((sbyte*)blk)[2 + k % 32] * (float)*(Half*)blk, q.At(r, k));
                    }
                }
            }
        }
        foreach (var (p, i) in g.Prompts.Select((p, i) => (p, i)))
            Compare.Close(log, $"gguf q8_0 prompt {i} vs the oracle", GoldenLogitsTests.PrefillAll(m, p), g.Prefill[i], 5e-2);
        // loaded as f32 instead: the dequantized blocks
        using var widened = OpenFolder(dir, WeightFormat.F32);
        Assert.Equal(q.ToFloats(), widened.Weights.Layers[1].Q.Weight.ToFloats());
    }

    [Fact]
    public void BadFilesGetClearErrors()
    {
        string dir = WriteModel(GgufType.F32);
        string path = Path.Combine(dir, "model.gguf");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(dir));
        Assert.Contains("runs past the end of the file", e.Message);
        bytes[0] = (byte)'X';
        File.WriteAllBytes(path, bytes);
        Assert.Contains("bad magic", Assert.Throws<ModelFormatException>(() => ModelConfig.Load(dir)).Message);
        WriteModel(GgufType.F32, kv => kv.Add(("llama.rope.scaling.type", 8, [.. BitConverter.GetBytes(6UL), .. "linear"u8])));
        Assert.Contains("RoPE frequency scaling", Assert.Throws<ModelFormatException>(() => ModelConfig.Load(dir)).Message);
        WriteModel(GgufType.F32, kv => kv[0] = ("general.architecture", 8, [.. BitConverter.GetBytes(5UL), .. "qwen2"u8]));
        Assert.Contains("architecture 'qwen2' is not supported", Assert.Throws<ModelFormatException>(() => ModelConfig.Load(dir)).Message);
    }
}
