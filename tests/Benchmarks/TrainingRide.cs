using System.Diagnostics;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Training;

namespace Loom.Benchmarks;

internal static partial class TrainingBenchmark
{
    /// <summary>What a chunk of training rows costs inside a decode step, against the same chunk on its own: on the
    /// SmolLM2-135M shape (bf16, packed), decode steps of b sequences alone, with a chunk of r rows of a 256-token training
    /// row riding along, and the chunk alone; the three alternate step by step so the machine's load falls on all of them.
    /// The saving of riding is (step alone + chunk alone) − step with the chunk: the overlap of the chunk's products with
    /// the step's pass over the weights.</summary>
    private static void Ride(string[] args)
    {
        int reps = args.Contains("--quick") ? 8 : 20;
        Console.WriteLine();
        Console.WriteLine($"== training rows riding along with decode steps: SmolLM2-135M shape, bf16 packed base, rank 16 on all seven modules; median of {reps} ==");
        var kernels = new CpuKernels();
        using var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.BF16, seed: 1, pack: true), kernels, maxContext: 512);
        var p = LoraParameters.Initialize(Smol, 16, 32, LoraTargets.All, 1);
        var tm = new TrainingModel(model, p, 256, Smol.NumLayers);
        var row = RandomRows(1, Smol.VocabSize, 5)[0];
        var chunkedRow = new TrainingExample(row.TokenIds[..256], row.LossMask[..256]);
        Console.WriteLine("| decode batch | chunk rows | step alone (ms) | chunk alone (ms) | step with chunk (ms) | extra over the step | saved by riding |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (int b in new[] { 2, 4, 8 })
            foreach (int rows in new[] { 8, 16, 32 })
            {
                var state = model.CreateState(16 * b, b);
                var caches = Enumerable.Range(0, b).Select(_ => model.CreateCache(512)).ToArray();
                for (int s = 0; s < b; s++) state.Add(caches[s], Enumerable.Range(0, 16).Select(i => (s * 131 + i * 17) % Smol.VocabSize).ToArray());
                model.Forward(state);
                var alone = new List<double>();
                var chunk = new List<double>();
                var with = new List<double>();
                tm.SetRow([chunkedRow]);
                tm.Embed();
                tm.BeginChunks();
                for (int i = 0; i < reps + 2; i++)
                {
                    if (tm.ChunkedRows + rows > 256) tm.BeginChunks();
                    Decode(state, caches, i);
                    long t0 = Stopwatch.GetTimestamp();
                    model.Forward(state);
                    long t1 = Stopwatch.GetTimestamp();
                    tm.NextChunk(rows).Complete();
                    long t2 = Stopwatch.GetTimestamp();
                    if (tm.ChunkedRows + rows > 256) tm.BeginChunks();
                    var ride = tm.NextChunk(rows);
                    Decode(state, caches, i);
                    long t3 = Stopwatch.GetTimestamp();
                    using (var scope = kernels.Ride(ride))
                    {
                        model.Forward(state);
                        scope.Complete();
                    }
                    ride.Complete();
                    long t4 = Stopwatch.GetTimestamp();
                    if (i < 2) continue; // warm-up
                    alone.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                    chunk.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds);
                    with.Add(Stopwatch.GetElapsedTime(t3, t4).TotalMilliseconds);
                }
                double a = Median(alone), c = Median(chunk), w = Median(with);
                Console.WriteLine($"| {b} | {rows} | {a:F1} | {c:F1} | {w:F1} | {w / a:F2}x | {a + c - w:F1} ms ({(a + c - w) / c:P0} of the chunk) |");
            }
        // where a chunk's time goes on its own: the work between products (norms, LoRA, RoPE, attention) and the products
        foreach (int rows in new[] { 8, 16, 32 })
        {
            var stages = new List<double>();
            var products = new List<double>();
            for (int i = 0; i < reps + 2; i++)
            {
                tm.SetRow([chunkedRow]);
                tm.Embed();
                tm.BeginChunks();
                double st = 0, pr = 0;
                int r0 = 256 - rows; // the last chunk of the row: attention over the most keys
                for (int l = 0; l < Smol.NumLayers; l++)
                {
                    for (int s = 0; s < TrainingModel.StagesPerLayer; s++)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        var product = tm.ForwardStage(l, s, r0, 256);
                        long t1 = Stopwatch.GetTimestamp();
                        tm.ProductOf(product);
                        long t2 = Stopwatch.GetTimestamp();
                        st += Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds;
                        pr += Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds;
                    }
                    long t3 = Stopwatch.GetTimestamp();
                    tm.FinishLayer(l, r0, 256);
                    st += Stopwatch.GetElapsedTime(t3).TotalMilliseconds;
                }
                if (i < 2) continue;
                stages.Add(st);
                products.Add(pr);
            }
            Console.WriteLine($"a chunk of {rows} rows (the row's last) on its own: {Median(stages):F1} ms between products, {Median(products):F1} ms in products");
        }
        Console.WriteLine($"load average: {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
    }

    private static void Decode(ForwardState state, IKvCache[] caches, int step)
    {
        state.Clear();
        foreach (var cache in caches)
        {
            if (cache.Length >= 500) cache.Truncate(16);
            state.Add(cache, [(step * 7 + cache.Length) % Smol.VocabSize]);
        }
    }

    private static double Median(List<double> v)
    {
        var s = v.Order().ToList();
        return s[s.Count / 2];
    }
}
