using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Loom.Inference.Constrained;
using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Benchmarks;

/// <summary>
/// What constrained decoding costs: the trie walk that builds one token mask (uncached) at vocabulary sizes of 49,152
/// (SmolLM2) and 128,256 (Llama 3), and decode at batch 8 on the SmolLM2-135M shape with and without a JSON schema on
/// every sequence, side by side in one run. No real tokenizer of that size ships with the repository, so the vocabulary
/// is grown BPE-style from models/loom-demo's 4,096 tokens: seeded random merges of two existing tokens until the size is
/// reached (English-like pieces of 1 to ~16 bytes, which is what the walk's cost depends on).
/// </summary>
internal static class ConstrainedBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    private const string Schema = """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}},
         "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"]}},
         "required":["name","age","tags"],"additionalProperties":false}
        """;

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        Console.WriteLine(Machine.Describe());
        var demo = TokenizerLoader.Load(Path.Combine(RepoRoot(), "models", "loom-demo"));
        var grammar = JsonGrammar.FromSchema(JsonDocument.Parse(Schema).RootElement);
        Console.WriteLine("\n== mask cost: one token mask computed for a state met for the first time (nested object / array / string / integer schema) ==");
        foreach (int size in new[] { 49152, 128256 })
        {
            var vocab = GrowVocabulary(demo, size);
            var trie = TokenTrie.Build(vocab.Length, id => vocab[id]);
            var states = States(grammar);
            int plain = 0;
            foreach (ulong w in trie.PlainUpTo[trie.MaxPlainChars]) plain += System.Numerics.BitOperations.PopCount(w);
            Console.WriteLine($"  {plain:N0} plain-text tokens precomputed for string states; the trie of the other {size - plain:N0} has {trie.NonPlain!.NodeCount:N0} nodes");
            Console.WriteLine($"vocabulary {size}: {trie.NodeCount:N0} trie nodes, longest token {trie.MaxTokenBytes} bytes");
            var logits = new float[size];
            foreach (var (label, text) in states)
            {
                var times = new List<double>();
                int allowed = 0;
                for (int i = 0; i < (quick ? 5 : 15); i++)
                {
                    // A new constraint each time: its mask cache is empty, so this is the cost of a state met first.
                    var constraint = new TokenConstraint(grammar, trie, id => vocab[id], []);
                    if (!constraint.AcceptBytes(Encoding.UTF8.GetBytes(text))) throw new InvalidOperationException(label);
                    long t0 = Stopwatch.GetTimestamp();
                    allowed = constraint.Mask(logits);
                    times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                long full = Stopwatch.GetTimestamp();
                var matcher = new JsonMatcher(grammar);
                matcher.Advance(Encoding.UTF8.GetBytes(text));
                var scratch = Enumerable.Range(0, trie.MaxTokenBytes + 1).Select(_ => matcher.Clone()).ToArray();
                trie.Walk(matcher, scratch, new ulong[(size + 63) / 64]);
                double fullWalk = Stopwatch.GetElapsedTime(full).TotalMilliseconds;
                Console.WriteLine($"  {label,-28} {Median(times),7:F2} ms (median of {times.Count}), {allowed,6:N0} tokens allowed; walking the whole trie instead: {fullWalk:F2} ms");
            }
        }

        Console.WriteLine("\n== decode at batch 8, SmolLM2-135M shape (bf16, random weights), 8 streams × 96 tokens ==");
        var vocab49 = GrowVocabulary(demo, Smol.VocabSize);
        var tokenizer = new BytesTokenizer(vocab49);
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.BF16, seed: 1), maxContext: 512);
        using var engine = new ServingEngine(model, tokenizer, new InferenceOptions
        {
            MaxContext = 512, PoolBytes = 256L << 20, TokenBudget = 256, MaxRunningSequences = 16, PrefillChunk = 64,
        }, "smol");
        var rounds = new List<(double Free, double Constrained)>();
        Decode(engine, null, 1); // warm-up: kernels, the trie for the constraint
        Decode(engine, grammar, 1);
        for (int round = 0; round < (quick ? 2 : 5); round++)
        {
            double free = Decode(engine, null, 96), constrained = Decode(engine, grammar, 96);
            rounds.Add((free, constrained));
            Console.WriteLine($"  round {round + 1}: free {free:F1} ms/step, constrained {constrained:F1} ms/step ({constrained / free - 1:P1}); load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        }
        double f = Median(rounds.Select(r => r.Free).ToList()), c = Median(rounds.Select(r => r.Constrained).ToList());
        Console.WriteLine($"median: free {f:F1} ms per decode step, constrained {c:F1} ms: the mask costs {c / f - 1:P1} of decode time (target ≤ 10%)");
    }

    /// <summary>Milliseconds per decode step with 8 sequences running at once (each token of a step counted once).</summary>
    private static double Decode(ServingEngine engine, JsonGrammar? grammar, int tokens)
    {
        var r = new Random(3);
        long produced = 0;
        var sw = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
        {
            var request = new GenerationRequest
            {
                PromptTokenIds = Enumerable.Range(0, 16).Select(_ => r.Next(256, Smol.VocabSize)).ToArray(),
                // Temperature 1 on random weights keeps a schema-bound sequence inside strings and arrays, as a long answer is.
                Sampling = new SamplingParams { Temperature = 1, Seed = (ulong)i + 1, MaxTokens = tokens, IgnoreEos = true, Grammar = grammar },
            };
            await foreach (var e in engine.GenerateAsync(request))
                if (e.TokenId is not null) Interlocked.Increment(ref produced);
        })).ToArray();
        Task.WaitAll(tasks);
        return sw.Elapsed.TotalMilliseconds / Math.Max(1, produced / 8.0);
    }

    private static (string Label, string Text)[] States(JsonGrammar grammar) =>
    [
        ("start of the value", ""),
        ("after '{', expecting a key", "{"),
        ("inside a string", "{\"name\":\"Ann"),
        ("inside an integer", "{\"name\":\"Ann\",\"age\":4"),
        ("in an array of strings", "{\"name\":\"Ann\",\"age\":4,\"tags\":["),
    ];

    /// <summary>The demo tokenizer's tokens, then seeded merges of two tokens already in the vocabulary (at most 16 bytes)
    /// until it holds <paramref name="size"/> distinct byte strings.</summary>
    private static byte[][] GrowVocabulary(ITokenizer demo, int size)
    {
        var list = new List<byte[]>();
        var seen = new HashSet<string>();
        for (int id = 0; id < demo.VocabSize; id++)
            if (!demo.IsSpecial(id) && demo.TokenBytes(id) is { Length: > 0 } b && seen.Add(Convert.ToHexString(b))) list.Add(b);
        var rng = new Random(11);
        while (list.Count < size)
        {
            var a = list[rng.Next(list.Count)];
            var b = list[rng.Next(list.Count)];
            if (a.Length + b.Length > 16) continue;
            byte[] merged = [.. a, .. b];
            if (seen.Add(Convert.ToHexString(merged))) list.Add(merged);
        }
        return [.. list];
    }

    private static string RepoRoot([System.Runtime.CompilerServices.CallerFilePath] string file = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, "..", ".."));

    private static double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);

    /// <summary>A tokenizer that is only a byte table (enough for the engine: ids in, bytes out).</summary>
    private sealed class BytesTokenizer(byte[][] vocab) : ITokenizer
    {
        public int VocabSize => vocab.Length;
        public int? BosTokenId => null;
        public IReadOnlyList<int> EosTokenIds => [];
        public int[] Encode(string text, bool addSpecialTokens = false) => throw new NotSupportedException();
        public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
        {
            var bytes = new List<byte>();
            foreach (int id in ids) bytes.AddRange(vocab[id]);
            return Encoding.UTF8.GetString([.. bytes]);
        }
        public IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new Streaming(vocab);
        public byte[]? TokenBytes(int id) => (uint)id < (uint)vocab.Length ? vocab[id] : null;

        private sealed class Streaming(byte[][] vocab) : IStreamingDecoder
        {
            private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder();
            public string Push(int tokenId)
            {
                var bytes = vocab[tokenId];
                var chars = new char[bytes.Length + 2];
                int n = _utf8.GetChars(bytes, 0, bytes.Length, chars, 0, flush: false);
                return new string(chars, 0, n);
            }
            public string Flush() => "";
        }
    }
}
