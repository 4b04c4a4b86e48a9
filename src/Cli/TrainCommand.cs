using System.Diagnostics;
using System.Globalization;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Tokenization;
using Loom.Inference.Training;

namespace Loom.Cli;

/// <summary>loom train: LoRA fine-tuning of a model folder on a JSONL file (chat or prompt/completion), written as a PEFT
/// adapter folder, with a progress bar on stderr.</summary>
internal sealed record TrainCommand(string Model, string Data, string Out, string? Validation, string? InitAdapter, WeightFormat Weights,
    TrainingHyperparameters Hyperparameters, int MaxContext)
{
    public const string Usage = """
        usage: loom train --model <dir> --data <jsonl> --out <adapter dir> [options]
          --validation FILE     held-out JSONL: validation loss every --val-every steps and at the end
          --epochs N            default 3
          --batch-size N        rows per micro-batch (default 1)
          --grad-accum N        micro-batches per optimizer step (default 4)
          --lr X                peak learning rate (default 2e-4)
          --warmup N            warmup steps (default 0)
          --schedule S          linear | cosine | constant (default cosine)
          --weight-decay X      default 0
          --betas B1,B2         default 0.9,0.999
          --eps X               default 1e-8
          --max-grad-norm X     default 1 (0: no clipping)
          --rank R --alpha A    LoRA rank (default 16) and alpha (default 2 * rank)
          --targets LIST        comma-separated modules, or all (default q_proj,k_proj,v_proj,o_proj)
          --seed S              default 0
          --packing             pack examples into rows of --max-len tokens
          --max-len N           longest row (default: the context)
          --val-every K         default 0 (only at the end)
          --init-adapter DIR    continue training a PEFT adapter
          --weights auto|f32|bf16|q8   in-memory weight format (default auto; q8: int8, a scale per 32)
          --max-context N       default 1024
        data lines: {"messages":[{"role":"user","content":"..."},{"role":"assistant","content":"..."}]}
                 or {"prompt":"...","completion":"..."}
        """;

    public static TrainCommand Parse(ReadOnlySpan<string> a)
    {
        string? model = null, data = null, output = null, validation = null, init = null;
        var weights = WeightFormat.Auto;
        int maxContext = 1024;
        double? alpha = null;
        var hp = new TrainingHyperparameters
        {
            Epochs = 3, GradientAccumulation = 4, LearningRate = 2e-4, Schedule = LearningRateSchedule.Cosine, Rank = 16,
            TargetModules = [LoraTarget.QProj, LoraTarget.KProj, LoraTarget.VProj, LoraTarget.OProj],
        };
        for (int i = 0; i < a.Length; i++)
        {
            string Next(ReadOnlySpan<string> args) => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int(ReadOnlySpan<string> args) => int.Parse(Next(args), CultureInfo.InvariantCulture);
            double Num(ReadOnlySpan<string> args) => double.Parse(Next(args), CultureInfo.InvariantCulture);
            switch (a[i])
            {
                case "--model": model = Next(a); break;
                case "--data": data = Next(a); break;
                case "--out": output = Next(a); break;
                case "--validation": validation = Next(a); break;
                case "--init-adapter": init = Next(a); break;
                case "--epochs": hp = hp with { Epochs = Int(a) }; break;
                case "--batch-size": hp = hp with { MicroBatchSize = Int(a) }; break;
                case "--grad-accum": hp = hp with { GradientAccumulation = Int(a) }; break;
                case "--lr": hp = hp with { LearningRate = Num(a) }; break;
                case "--warmup": hp = hp with { WarmupSteps = Int(a) }; break;
                case "--schedule": hp = hp with { Schedule = Enum.Parse<LearningRateSchedule>(Next(a), ignoreCase: true) }; break;
                case "--weight-decay": hp = hp with { WeightDecay = Num(a) }; break;
                case "--betas":
                    var b = Next(a).Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                    if (b.Length != 2) throw new ArgumentException("--betas takes two numbers: B1,B2");
                    hp = hp with { Beta1 = b[0], Beta2 = b[1] };
                    break;
                case "--eps": hp = hp with { Epsilon = Num(a) }; break;
                case "--max-grad-norm": hp = hp with { MaxGradNorm = Num(a) }; break;
                case "--rank": hp = hp with { Rank = Int(a) }; break;
                case "--alpha": alpha = Num(a); break;
                case "--targets": hp = hp with { TargetModules = Targets(Next(a)) }; break;
                case "--seed": hp = hp with { Seed = ulong.Parse(Next(a), CultureInfo.InvariantCulture) }; break;
                case "--packing": hp = hp with { Packing = true }; break;
                case "--max-len": hp = hp with { MaxSequenceLength = Int(a) }; break;
                case "--val-every": hp = hp with { ValidationEvery = Int(a) }; break;
                case "--weights": weights = Enum.Parse<WeightFormat>(Next(a), ignoreCase: true); break;
                case "--max-context": maxContext = Int(a); break;
                default: throw new ArgumentException($"unknown option '{a[i]}'\n{Usage}");
            }
        }
        if (model is null || data is null || output is null) throw new ArgumentException($"--model, --data and --out are required\n{Usage}");
        hp = hp with { Alpha = alpha ?? 2.0 * hp.Rank };
        if (hp.Problem() is { } p) throw new ArgumentException(p);
        return new TrainCommand(model, data, output, validation, init, weights, hp, maxContext);
    }

    private static IReadOnlyList<LoraTarget> Targets(string list)
    {
        if (list == "all") return LoraTargets.All;
        return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => LoraTargets.TryParse(n, out var t) ? t : throw new ArgumentException($"unknown target module '{n}' (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or all)"))
            .Distinct().ToArray();
    }

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var sw = Stopwatch.StartNew();
        using var engine = ServingEngine.Load(new InferenceOptions
        {
            ModelDirectory = Model, WeightFormat = Weights, MaxContext = MaxContext, PoolBytes = 64L << 20,
        });
        var tokenizer = engine.Model.Tokenizer ?? throw new ArgumentException($"{Model} has no tokenizer.json: the JSONL text cannot be tokenized");
        int maxLen = Hyperparameters.MaxSequenceLength > 0 ? Hyperparameters.MaxSequenceLength : engine.Model.MaxContext;
        var limits = new JsonlLimits(maxLen);
        var examples = Read(Data, tokenizer, limits);
        var validation = Validation is null ? null : Read(Validation, tokenizer, limits);
        Console.Error.WriteLine($"[{engine.Model.Name}: {engine.Model.Config.ParameterCount:N0} parameters, loaded in {sw.ElapsedMilliseconds} ms; " +
            $"{examples.Count} examples ({examples.Sum(e => e.TrainedTokens):N0} trained tokens){(validation is null ? "" : $", {validation.Count} held out")}]");
        var run = engine.SubmitTraining(new TrainingRequest
        {
            Examples = examples, Validation = validation, Hyperparameters = Hyperparameters, InitialAdapterFolder = InitAdapter,
            OutputFolder = Out, BaseModelName = engine.Model.Name,
        });
        using var registration = cancellationToken.Register(run.Cancel);
        var bar = new ProgressBar(Console.Error);
        await foreach (var p in run.ReadProgressAsync(CancellationToken.None)) bar.Show(p);
        bar.Done();
        try
        {
            var result = await run.Completion;
            Console.Error.WriteLine($"[done: {result.Steps} steps, {result.TrainedTokens:N0} trained tokens in {result.Elapsed:hh\\:mm\\:ss}; " +
                $"train loss {result.FinalTrainLoss:F4}{(result.FinalValidationLoss is { } v ? $", validation loss {v:F4}" : "")}]");
            Console.Out.WriteLine(result.AdapterFolder);
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("[cancelled]");
            return 130;
        }
    }

    private static List<TrainingExample> Read(string path, ITokenizer tokenizer, JsonlLimits limits)
    {
        try { return JsonlExamples.ReadFile(path, tokenizer, limits); }
        catch (JsonlFormatException e) { throw new ArgumentException($"{path}: {e.Message}"); }
    }
}

/// <summary>One line on stderr, redrawn: [#####.....] step 12/100 · loss 2.3456 · val 2.1 · lr 1.0e-4 · 123 tok/s · ETA 0:42.</summary>
internal sealed class ProgressBar(TextWriter w)
{
    private const int Width = 24;
    private readonly bool _redraw = !Console.IsErrorRedirected;
    private int _lastStep = -1;

    public void Show(TrainingProgress p)
    {
        if (!_redraw && p.Step == _lastStep) return;
        _lastStep = p.Step;
        int filled = (int)Math.Round(p.Fraction * Width);
        string eta = p.EstimatedRemaining is { } e ? $"{(int)e.TotalMinutes}:{e.Seconds:00}" : "?";
        string line = $"[{new string('#', filled)}{new string('.', Width - filled)}] step {p.Step}/{p.TotalSteps} · epoch {p.Epoch:F2} · " +
            $"loss {(double.IsNaN(p.TrainLoss) ? "-" : p.TrainLoss.ToString("F4", CultureInfo.InvariantCulture))}" +
            (p.ValidationLoss is { } v ? $" · val {v.ToString("F4", CultureInfo.InvariantCulture)}" : "") +
            $" · lr {p.LearningRate.ToString("0.0e0", CultureInfo.InvariantCulture)} · {p.TokensPerSecond:F0} tok/s · ETA {eta}" +
            (p.State is TrainingRunState.Running or TrainingRunState.Completed ? "" : $" · {p.State.ToString().ToLowerInvariant()}");
        if (_redraw) w.Write($"\r{line,-110}");
        else w.WriteLine(line);
    }

    public void Done()
    {
        if (_redraw) w.WriteLine();
    }
}
