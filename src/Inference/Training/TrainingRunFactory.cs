using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Inference.Training;

/// <summary>Checks a <see cref="TrainingRequest"/> against the base model and builds its run: parameters (PEFT
/// initialisation, an initial adapter, or a snapshot), the data plan and the trainer.</summary>
internal static class TrainingRunFactory
{
    /// <summary>Most examples in a training or validation set.</summary>
    public const int MaxExamples = 1_000_000;

    public static TrainingRun Create(string id, Transformer model, TrainingRequest request, string modelName, long activationBytes, Action wake)
    {
        ArgumentNullException.ThrowIfNull(request);
        var c = model.Config;
        var hp = request.Hyperparameters ?? throw new ArgumentException("hyperparameters are required");
        if (hp.Problem() is { } bad) throw new ArgumentException($"hyperparameters: {bad}");
        int maxLen = hp.MaxSequenceLength == 0 ? model.MaxContext : hp.MaxSequenceLength;
        if (maxLen > model.MaxContext) throw new ArgumentException($"max sequence length {maxLen} exceeds the engine's context of {model.MaxContext}");
        CheckSet("training example", request.Examples, c, maxLen, required: true);
        CheckSet("validation example", request.Validation, c, maxLen, required: false);
        if (!(request.TenantShare > 0) || double.IsInfinity(request.TenantShare)) throw new ArgumentException("the tenant share must be positive and finite");
        if (request.InitialAdapterFolder is not null && request.ResumeFrom is not null)
            throw new ArgumentException("give an initial adapter or a snapshot to resume from, not both");
        if (request.Checkpoints?.Problem() is { } badSchedule) throw new ArgumentException(badSchedule);

        string fingerprint = Fingerprint(request, maxLen);
        LoraParameters p;
        if (request.ResumeFrom is { } snap)
        {
            if (snap.Fingerprint != fingerprint)
                throw new ArgumentException("the snapshot was taken from a run with other data or hyperparameters");
            p = LoraParameters.FromSnapshot(c, snap);
        }
        else if (request.InitialAdapterFolder is { } folder)
        {
            PeftAdapter adapter;
            try { adapter = PeftAdapter.Load(folder, c, new PeftValidation(TrainingHyperparameters.MaxRank)); }
            catch (AdapterFormatException e) { throw new ArgumentException($"initial adapter: {e.Message}", e); }
            p = LoraParameters.FromAdapter(c, adapter);
        }
        else p = LoraParameters.Initialize(c, hp.Rank, hp.Alpha, hp.TargetModules, hp.Seed);

        var plan = new TrainingPlan(request.Examples, hp, maxLen);
        int rowTokens = Math.Max(plan.Steps.Max(s => s.Rows.Max(r => r.Sum(e => e.Length))),
            request.Validation is { Count: > 0 } v ? v.Max(e => e.Length) : 0);
        int stored = StoredLayers(c, rowTokens, p.Rank, p.Targets.Count, activationBytes);
        var trainer = new LoraTrainer(model, p, plan, hp, request.Validation, stored, rowTokens);
        if (request.ResumeFrom is { } s) trainer.RestoreProgress(s);
        string output = request.OutputFolder ?? Path.Combine(Path.GetTempPath(), "loom-training", id);
        return new TrainingRun(id, trainer, fingerprint, request, output, request.BaseModelName ?? modelName, wake);
    }

    /// <summary>Layers whose activations fit in <paramref name="bytes"/> (at least one; the others are recomputed).</summary>
    public static int StoredLayers(ModelConfig c, int rowTokens, int rank, int targets, long bytes)
    {
        for (int s = c.NumLayers; s > 1; s--)
            if (TrainingModel.BytesFor(c, rowTokens, rank, targets, s) <= bytes) return s;
        return 1;
    }

    private static void CheckSet(string what, IReadOnlyList<TrainingExample>? set, ModelConfig c, int maxLen, bool required)
    {
        if (set is null || set.Count == 0)
        {
            if (required) throw new ArgumentException("at least one training example is required");
            return;
        }
        if (set.Count > MaxExamples) throw new ArgumentException($"{set.Count} {what}s exceed the limit of {MaxExamples}");
        for (int i = 0; i < set.Count; i++)
            if (set[i] is null) throw new ArgumentException($"{what} {i} is null");
            else if (set[i].Problem(c.VocabSize, maxLen) is { } p) throw new ArgumentException($"{what} {i}: {p}");
    }

    /// <summary>SHA-256 of everything that decides the result: hyperparameters, the training context, and every example.</summary>
    public static string Fingerprint(TrainingRequest r, int maxLen)
    {
        var hp = r.Hyperparameters;
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        string Inv(double d) => d.ToString("R", CultureInfo.InvariantCulture);
        string head = string.Join('|', "loom-training-v1", hp.Epochs, hp.MicroBatchSize, hp.GradientAccumulation, Inv(hp.LearningRate), hp.WarmupSteps,
            hp.Schedule, Inv(hp.WeightDecay), Inv(hp.Beta1), Inv(hp.Beta2), Inv(hp.Epsilon), Inv(hp.MaxGradNorm), hp.Rank, Inv(hp.Alpha),
            string.Join(',', hp.TargetModules.Order().Select(LoraTargets.Name)), hp.Seed, hp.Shuffle, hp.ValidationEvery, hp.Packing, maxLen);
        h.AppendData(Encoding.UTF8.GetBytes(head));
        var b = new byte[4];
        void Set(IReadOnlyList<TrainingExample>? set)
        {
            BitConverter.TryWriteBytes(b, set?.Count ?? -1);
            h.AppendData(b);
            if (set is null) return;
            foreach (var e in set)
            {
                BitConverter.TryWriteBytes(b, e.Length);
                h.AppendData(b);
                h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(e.TokenIds.AsSpan()));
                foreach (bool m in e.LossMask) h.AppendData(m ? "\u0001"u8 : "\0"u8);
            }
        }
        Set(r.Examples);
        Set(r.Validation);
        return Convert.ToHexString(h.GetHashAndReset());
    }
}
