// loom generate: streams a completion from a Hugging Face model folder to the terminal.
// loom train: LoRA fine-tuning of a model folder on a JSONL file, written as a PEFT adapter folder.
// Usage: dotnet run --project src/Cli -- generate --model <dir> --prompt "text" [options]
//        dotnet run --project src/Cli -- train --model <dir> --data <jsonl> --out <adapter dir> [options]
using System.Diagnostics;
using System.Globalization;
using Loom.Cli;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Model;

if (args.Length > 0 && args[0] == "train")
{
    if (args.Length == 1 || args[1] is "-h" or "--help")
    {
        Console.Error.WriteLine(TrainCommand.Usage);
        return args.Length == 1 ? 2 : 0;
    }
    try
    {
        var train = TrainCommand.Parse(args.AsSpan(1));
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        return await train.RunAsync(stop.Token);
    }
    catch (Exception e) when (e is ArgumentException or ModelFormatException or AdapterFormatException or InvalidOperationException or IOException or FormatException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 1;
    }
}
if (args.Length == 0 || args[0] is "-h" or "--help" || args[0] != "generate")
{
    Console.Error.WriteLine(GenerateCommand.Usage);
    Console.Error.WriteLine(TrainCommand.Usage);
    return args.Length > 0 && args[0] is "-h" or "--help" ? 0 : 2;
}
try
{
    var cmd = GenerateCommand.Parse(args.AsSpan(1));
    var sw = Stopwatch.StartNew();
    // a pool that holds one sequence of the full context, and room for the adapter
    var config = ModelConfig.Load(cmd.Model);
    int contextPages = Loom.Inference.Memory.PagedKvCache.PagesFor(config, config.HiddenSize, Math.Min(cmd.MaxContext, config.MaxPositionEmbeddings));
    long poolBytes = (long)contextPages * config.HiddenSize * sizeof(float) + (256L << 20);
    using var engine = ServingEngine.Load(new InferenceOptions { ModelDirectory = cmd.Model, WeightFormat = cmd.Weights, MaxContext = cmd.MaxContext, PoolBytes = poolBytes });
    Console.Error.WriteLine($"[{engine.Model.Name}: {engine.Model.Config.ModelType}, {engine.Model.Config.ParameterCount:N0} parameters, loaded in {sw.ElapsedMilliseconds} ms]");
    if (cmd.Adapter is { } adapterFolder)
    {
        engine.RegisterAdapter(GenerateCommand.AdapterId, adapterFolder);
        Console.Error.WriteLine($"[adapter: {adapterFolder}]");
    }
    sw.Restart();
    var first = TimeSpan.Zero;
    using var cts = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
    await foreach (var ev in engine.GenerateAsync(cmd.Request, cts.Token))
    {
        if (first == TimeSpan.Zero) first = sw.Elapsed;
        Console.Out.Write(ev.Text);
        if (cmd.Request.Sampling.Logprobs is not null && ev.Logprobs is { } lp)
            Console.Error.Write($" [{ev.TokenId}: {lp.Logprob.ToString("F3", CultureInfo.InvariantCulture)}]");
        if (ev.IsFinal)
        {
            Console.Out.WriteLine();
            if (cmd.Request.Sampling.Logprobs is not null) Console.Error.WriteLine();
            var u = ev.Usage!;
            double tps = u.CompletionTokens > 1 ? (u.CompletionTokens - 1) / (sw.Elapsed - first).TotalSeconds : 0;
            Console.Error.WriteLine($"[finish: {ev.FinishReason!.Value.ToString().ToLowerInvariant()}; prompt {u.PromptTokens} tokens, completion {u.CompletionTokens} tokens; first token {first.TotalMilliseconds:F0} ms, {tps:F1} tokens/s]");
        }
    }
    return 0;
}
catch (Exception e) when (e is ArgumentException or ModelFormatException or AdapterFormatException or InvalidOperationException or FileNotFoundException or DirectoryNotFoundException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("\n[cancelled]");
    return 130;
}

namespace Loom.Cli
{
    using Loom.Inference.Sampling;

    internal sealed record GenerateCommand(string Model, GenerationRequest Request, WeightFormat Weights, int MaxContext, string? Adapter)
    {
        public const string AdapterId = "cli-adapter";

        public const string Usage = """
            usage: loom generate --model <dir> (--prompt <text> | --prompt-ids <id,id,...>) [options]
              --max-tokens N      default 64
              --temperature T     default 0.8 (0 = greedy)
              --top-k K  --top-p P  --min-p M
              --seed S            reproducible sampling
              --stop STR          stop string (repeatable)
              --stop-id ID        stop token id (repeatable)
              --ignore-eos        keep going past end-of-sequence tokens
              --logprobs N        print each token's logprob to stderr (N alternatives computed)
              --weights auto|f32|bf16|q8   in-memory weight format (default auto; q8: int8, a scale per 32)
              --max-context N     default 4096
              --no-bos            do not add the BOS token to a text prompt
              --adapter DIR       apply a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)
            """;

        public static GenerateCommand Parse(ReadOnlySpan<string> a)
        {
            string? model = null, prompt = null, adapter = null;
            int[]? ids = null;
            var s = new SamplingParams { Temperature = 0.8f, MaxTokens = 64 };
            var stops = new List<string>();
            var stopIds = new List<int>();
            var weights = WeightFormat.Auto;
            int maxContext = 4096;
            bool bos = true;
            for (int i = 0; i < a.Length; i++)
            {
                string Next(ReadOnlySpan<string> args) => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int Int(ReadOnlySpan<string> args) => int.Parse(Next(args), CultureInfo.InvariantCulture);
                float Float(ReadOnlySpan<string> args) => float.Parse(Next(args), CultureInfo.InvariantCulture);
                switch (a[i])
                {
                    case "--model": model = Next(a); break;
                    case "--prompt": prompt = Next(a); break;
                    case "--prompt-ids": ids = Next(a).Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray(); break;
                    case "--max-tokens": s = s with { MaxTokens = Int(a) }; break;
                    case "--temperature": s = s with { Temperature = Float(a) }; break;
                    case "--top-k": s = s with { TopK = Int(a) }; break;
                    case "--top-p": s = s with { TopP = Float(a) }; break;
                    case "--min-p": s = s with { MinP = Float(a) }; break;
                    case "--seed": s = s with { Seed = ulong.Parse(Next(a), CultureInfo.InvariantCulture) }; break;
                    case "--stop": stops.Add(Next(a)); break;
                    case "--stop-id": stopIds.Add(Int(a)); break;
                    case "--ignore-eos": s = s with { IgnoreEos = true }; break;
                    case "--logprobs": s = s with { Logprobs = Int(a) }; break;
                    case "--weights": weights = Enum.Parse<WeightFormat>(Next(a), ignoreCase: true); break;
                    case "--max-context": maxContext = Int(a); break;
                    case "--no-bos": bos = false; break;
                    case "--adapter": adapter = Next(a); break;
                    default: throw new ArgumentException($"unknown option '{a[i]}'\n{Usage}");
                }
            }
            if (model is null) throw new ArgumentException($"--model is required\n{Usage}");
            if ((prompt is null) == (ids is null)) throw new ArgumentException($"give exactly one of --prompt and --prompt-ids\n{Usage}");
            s = s with { StopStrings = stops, StopTokenIds = stopIds };
            return new GenerateCommand(model, new GenerationRequest
            {
                Prompt = prompt, PromptTokenIds = ids, AddSpecialTokens = bos, Sampling = s, AdapterId = adapter is null ? null : AdapterId,
            }, weights, maxContext, adapter);
        }
    }
}
