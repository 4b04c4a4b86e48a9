using System.Diagnostics;
using System.Text.Json;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;
using Loom.Inference.Training;

namespace Loom.Benchmarks;

internal static partial class TrainingBenchmark
{
    /// <summary>The quality task on models/loom-demo: a fixed answer style. Asked "Define: w", the fine-tuned model must
    /// answer exactly "I can't define w yet." (the base model writes a dictionary entry instead). Words are the 300
    /// held-out WordNet lemmas of models/loom-demo/eval/heldout.json (never in the model's training); 200 train, 100 are
    /// held out from fine-tuning and scored by greedy exact match before and after.</summary>
    private static void Quality(string[] args)
    {
        string model = Environment.GetEnvironmentVariable("LOOM_DEMO_MODEL_DIR") ?? Path.Combine(RepoRoot(), "models", "loom-demo");
        string dir = Directory.CreateTempSubdirectory("loom-quality-").FullName;
        Console.WriteLine();
        Console.WriteLine($"== quality: fixed answer style on {model} ==");
        var (train, heldout) = WriteQualityData(model, dir);
        Console.WriteLine($"data: {train} and {heldout} (built by TrainingBenchmark.WriteQualityData; words from eval/heldout.json, seed 5)");
        using var engine = ServingEngine.Load(new InferenceOptions { ModelDirectory = model, MaxContext = 128, PoolBytes = 64L << 20 });
        var tok = engine.Model.Tokenizer!;
        var cases = File.ReadLines(heldout).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("messages"))
            .Select(m => (Prompt: m[0].GetProperty("content").GetString()!, Answer: m[1].GetProperty("content").GetString()!)).ToArray();
        double before = ExactMatch(engine, tok, cases, adapter: null, show: 3);
        Console.WriteLine($"held-out exact match before fine-tuning: {before:P0} ({cases.Length} prompts)");
        var hp = new TrainingHyperparameters
        {
            Epochs = 3, MicroBatchSize = 1, GradientAccumulation = 4, LearningRate = 2e-3, WarmupSteps = 5, Schedule = LearningRateSchedule.Cosine,
            Rank = 8, Alpha = 16, TargetModules = LoraTargets.All, Seed = 1,
        };
        var examples = JsonlExamples.ReadFile(train, tok, new JsonlLimits(128));
        var sw = Stopwatch.StartNew();
        var run = engine.SubmitTraining(new TrainingRequest { Examples = examples, Hyperparameters = hp, OutputFolder = Path.Combine(dir, "adapter") });
        var result = run.Completion.GetAwaiter().GetResult();
        Console.WriteLine($"fine-tuned in {sw.Elapsed.TotalSeconds:F1} s: {result.Steps} steps, {result.TrainedTokens} trained tokens, final loss {result.FinalTrainLoss:F4}");
        Console.WriteLine($"  same as: loom train --model {model} --data {train} --out {dir}/adapter --epochs 3 --grad-accum 4 --lr 2e-3 --warmup 5 --schedule cosine --rank 8 --alpha 16 --targets all --seed 1");
        engine.RegisterAdapter("style", result.AdapterFolder);
        double after = ExactMatch(engine, tok, cases, adapter: "style", show: 3);
        Console.WriteLine($"held-out exact match after fine-tuning: {after:P0} (target: at most 10% before, at least 80% after)");
    }

    private static double ExactMatch(ServingEngine engine, ITokenizer tok, (string Prompt, string Answer)[] cases, string? adapter, int show)
    {
        int hits = 0;
        foreach (var (prompt, answer) in cases)
        {
            var ids = tok.EncodeChat([new ChatMessage("user", prompt)]);
            var request = new GenerationRequest
            {
                PromptTokenIds = ids, AdapterId = adapter, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 24 },
            };
            string text = string.Concat(engine.GenerateAsync(request).ToBlockingEnumerable().Select(e => e.Text)).Trim();
            if (text == answer) hits++;
            if (show-- > 0) Console.WriteLine($"  {prompt} → {text}");
        }
        return (double)hits / cases.Length;
    }

    /// <summary>The task's data builder: train.jsonl (200 chats) and heldout.jsonl (100 chats) in OpenAI's chat format.</summary>
    public static (string Train, string Heldout) WriteQualityData(string model, string dir)
    {
        var tok = TokenizerLoader.Load(model);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "eval", "heldout.json")));
        var words = doc.RootElement.GetProperty("sequences").EnumerateArray()
            .Select(s => tok.Decode(s.EnumerateArray().Select(x => x.GetInt32()).ToArray()))
            .Select(line => line[..line.IndexOf(" (", StringComparison.Ordinal)].Trim())
            .Distinct().ToList();
        var rng = new Rng(5);
        for (int i = words.Count - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (words[i], words[j]) = (words[j], words[i]);
        }
        string Line(string w) => JsonSerializer.Serialize(new
        {
            messages = new[] { new { role = "user", content = $"Define: {w}" }, new { role = "assistant", content = $"I can't define {w} yet." } },
        });
        string train = Path.Combine(dir, "train.jsonl"), heldout = Path.Combine(dir, "heldout.jsonl");
        File.WriteAllLines(train, words.Take(200).Select(Line));
        File.WriteAllLines(heldout, words.Skip(200).Take(100).Select(Line));
        return (train, heldout);
    }

    private static string RepoRoot([System.Runtime.CompilerServices.CallerFilePath] string file = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, "..", ".."));
}
