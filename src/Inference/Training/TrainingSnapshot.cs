using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Loom.Inference.Formats;

namespace Loom.Inference.Training;

/// <summary>The trainable state of one LoRA module with its AdamW moments (f32).</summary>
/// <param name="A">(Rank, In) lora_A.weight; <paramref name="B"/>: (Out, Rank) lora_B.weight.</param>
/// <param name="MA">(Rank, In) first moment of A; <paramref name="VA"/> its second moment; MB, VB: the same for B.</param>
public sealed record LoraModuleState(int Layer, LoraTarget Target, int Rank, int In, int Out,
    float[] A, float[] B, float[] MA, float[] VA, float[] MB, float[] VB);

/// <summary>A consistent copy of a training run between two optimizer steps: everything needed to continue it
/// bitwise-identically. Serialise with <see cref="ToBytes"/> / <see cref="FromBytes"/>, or as a folder with
/// <see cref="Save"/> (a PEFT adapter of the current weights plus <c>training_state.bin</c>) / <see cref="Load"/>.</summary>
public sealed class TrainingSnapshot
{
    public const string StateFileName = "training_state.bin";
    private static readonly byte[] Magic = "LOOMTRS1"u8.ToArray();
    /// <summary>Bound on a snapshot read back (2 GiB of tensors).</summary>
    public const long MaxBytes = 2L << 30;

    /// <summary>Identifies the data and hyperparameters the run was started with (a resume must match it).</summary>
    public required string Fingerprint { get; init; }
    /// <summary>Optimizer steps done.</summary>
    public required int Step { get; init; }
    /// <summary>Epoch in progress (0-based) and the index of the next micro-batch row in that epoch's order.</summary>
    public required int Epoch { get; init; }
    public required int Cursor { get; init; }
    /// <summary>State of the data-order generator (xoshiro256**) at the start of epoch <see cref="Epoch"/>; a restore
    /// checks it (with the cursor) against the run's own data order.</summary>
    public required ulong[] RngState { get; init; }
    public required long TrainedTokens { get; init; }
    public required double LastTrainLoss { get; init; }
    public double? LastValidationLoss { get; init; }
    /// <summary>Run time before this snapshot (progress only; not part of the result).</summary>
    public TimeSpan Elapsed { get; init; }
    /// <summary>For a checkpoint the loop took by its <see cref="CheckpointSchedule"/>: how long the loop stood still for
    /// checkpoints since the one before (waiting for an earlier write, back-pressure) plus the copy of this one. Not stored.</summary>
    public TimeSpan Stall { get; internal set; }
    public required int Rank { get; init; }
    public required double Alpha { get; init; }
    /// <summary>Every module's weights and moments in PEFT's layout. A checkpoint's snapshot over a run's staging
    /// buffers (<see cref="OverStaging"/>) builds them at the first read; read it before the checkpoint's write task
    /// completes (the run reuses the buffers for its next checkpoint, and a read after that throws).</summary>
    public IReadOnlyList<LoraModuleState> Modules
    {
        get => _modules ?? Materialize();
        init => _modules = value;
    }

    private IReadOnlyList<LoraModuleState>? _modules;
    private SnapshotStaging? _staging;
    private int _generation;
    private readonly Lock _materialize = new();

    /// <summary>A snapshot whose tensors are in <paramref name="staging"/> at <paramref name="generation"/>.</summary>
    internal TrainingSnapshot OverStaging(SnapshotStaging staging, int generation)
    {
        _staging = staging;
        _generation = generation;
        return this;
    }

    private IReadOnlyList<LoraModuleState> Materialize()
    {
        lock (_materialize)
        {
            if (_modules is not null) return _modules;
            var staging = _staging ?? throw new InvalidOperationException("the snapshot has no modules");
            string reused = $"the checkpoint at step {Step} was read after its staging buffers were reused for a later checkpoint";
            if (staging.Generation != _generation) throw new InvalidOperationException(reused);
            var modules = staging.Export();
            if (staging.Generation != _generation) throw new InvalidOperationException(reused);
            _modules = modules;
            _staging = null;
            return modules;
        }
    }

    public long TensorBytes => _modules is null && _staging is { } st
        ? st.Modules.Sum(m => 3L * (m.A.Length + m.Bt.Length) * sizeof(float))
        : Modules.Sum(m => 3L * (m.A.Length + m.B.Length) * sizeof(float));

    private sealed record Header(string Fingerprint, int Step, int Epoch, int Cursor, ulong[] Rng, long TrainedTokens,
        double LastTrainLoss, double? LastValidationLoss, long ElapsedTicks, int Rank, double Alpha, int[][] Modules);

    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        WriteTo(ms);
        return ms.ToArray();
    }

    public void WriteTo(Stream stream)
    {
        var header = new Header(Fingerprint, Step, Epoch, Cursor, RngState, TrainedTokens, LastTrainLoss, LastValidationLoss, Elapsed.Ticks,
            Rank, Alpha, Modules.Select(m => new[] { m.Layer, (int)m.Target, m.Rank, m.In, m.Out }).ToArray());
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(json.Length);
        w.Write(json);
        foreach (var m in Modules)
            foreach (var t in new[] { m.A, m.B, m.MA, m.VA, m.MB, m.VB }) w.Write(MemoryMarshal.AsBytes(t.AsSpan()));
    }

    /// <summary>Reads a snapshot written by <see cref="ToBytes"/>; throws <see cref="InvalidDataException"/> on anything else.</summary>
    public static TrainingSnapshot FromBytes(byte[] bytes)
    {
        if (bytes.Length < Magic.Length + 4 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw new InvalidDataException("not a Loom training snapshot");
        int n = BitConverter.ToInt32(bytes, Magic.Length);
        int pos = Magic.Length + 4;
        if (n <= 0 || n > bytes.Length - pos) throw new InvalidDataException("training snapshot header is truncated");
        Header h;
        try { h = JsonSerializer.Deserialize<Header>(bytes.AsSpan(pos, n)) ?? throw new InvalidDataException("empty snapshot header"); }
        catch (JsonException e) { throw new InvalidDataException($"training snapshot header is not valid ({e.Message})"); }
        pos += n;
        if (h.Rng is not { Length: 4 } || h.Modules is null || h.Fingerprint is null) throw new InvalidDataException("training snapshot header is incomplete");
        var modules = new List<LoraModuleState>(h.Modules.Length);
        foreach (var d in h.Modules)
        {
            if (d is not { Length: 5 } || d[2] < 1 || d[2] > TrainingHyperparameters.MaxRank || d[3] < 1 || d[4] < 1 || !Enum.IsDefined((LoraTarget)d[1]))
                throw new InvalidDataException("training snapshot names a bad module");
            long a = (long)d[2] * d[3], b = (long)d[4] * d[2];
            float[] Read(long count)
            {
                long bytesNeeded = count * sizeof(float);
                if (bytesNeeded > bytes.Length - pos) throw new InvalidDataException("training snapshot is truncated");
                var v = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(pos, (int)bytesNeeded)).ToArray();
                pos += (int)bytesNeeded;
                return v;
            }
            modules.Add(new LoraModuleState(d[0], (LoraTarget)d[1], d[2], d[3], d[4], Read(a), Read(b), Read(a), Read(a), Read(b), Read(b)));
        }
        if (pos != bytes.Length) throw new InvalidDataException("training snapshot has trailing bytes");
        return new TrainingSnapshot
        {
            Fingerprint = h.Fingerprint, Step = h.Step, Epoch = h.Epoch, Cursor = h.Cursor, RngState = h.Rng, TrainedTokens = h.TrainedTokens,
            LastTrainLoss = h.LastTrainLoss, LastValidationLoss = h.LastValidationLoss, Elapsed = TimeSpan.FromTicks(h.ElapsedTicks),
            Rank = h.Rank, Alpha = h.Alpha, Modules = modules,
        };
    }

    /// <summary>The LoRA weights as a PEFT adapter config and modules.</summary>
    public (PeftAdapterConfig Config, IReadOnlyList<LoraWeights> Modules) ToAdapter(string? baseModelName) =>
        (new PeftAdapterConfig
        {
            Rank = Rank, Alpha = Alpha, BaseModelNameOrPath = baseModelName,
            Targets = Modules.Select(m => m.Target).Distinct().Order().ToArray(),
        },
        Modules.Select(m => new LoraWeights(m.Layer, m.Target, m.Rank, m.In, m.Out, m.A, m.B)).ToArray());

    /// <summary>Writes the folder: the current adapter (PEFT) and <see cref="StateFileName"/> (this whole snapshot).</summary>
    public void Save(string folder, string? baseModelName = null)
    {
        var (config, modules) = ToAdapter(baseModelName);
        PeftAdapterWriter.Write(folder, config, modules);
        string path = Path.Combine(folder, StateFileName);
        using (var fs = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write)) WriteTo(fs);
        File.Move(path + ".tmp", path, overwrite: true);
    }

    public static TrainingSnapshot Load(string folder)
    {
        string path = Path.Combine(folder, StateFileName);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{path} is missing", path);
        if (info.Length > MaxBytes) throw new InvalidDataException($"{path} is too large");
        return FromBytes(File.ReadAllBytes(path));
    }
}
