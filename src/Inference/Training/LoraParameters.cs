using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Sampling;

namespace Loom.Inference.Training;

/// <summary>One trained LoRA pair with its gradient and AdamW moments (f32). B is held transposed (Bt = Bᵀ, (r, out)) so
/// the kernels read it row by row; PEFT's layout (out, r) is produced on export.</summary>
internal sealed class LoraModule
{
    public readonly int Layer, Rank, In, Out;
    public readonly LoraTarget Target;
    public readonly float[] A, Bt;        // (r, in), (r, out)
    public readonly float[] GA, GBt;      // gradients, same shapes
    public readonly float[] MA, VA, MBt, VBt; // AdamW moments, same shapes

    public LoraModule(int layer, LoraTarget target, int rank, int inDim, int outDim)
    {
        Layer = layer; Target = target; Rank = rank; In = inDim; Out = outDim;
        A = new float[rank * inDim]; GA = new float[A.Length]; MA = new float[A.Length]; VA = new float[A.Length];
        Bt = new float[rank * outDim]; GBt = new float[Bt.Length]; MBt = new float[Bt.Length]; VBt = new float[Bt.Length];
    }

    /// <summary>This module's state in PEFT's layout from its tensors as the trainer holds them (A, Bt and their moments,
    /// these or copies of them): fresh arrays, B and its moments transposed back.</summary>
    public LoraModuleState State(float[] a, float[] bt, float[] ma, float[] va, float[] mbt, float[] vbt)
    {
        float[] T(float[] t) { var b = new float[t.Length]; Transpose(t, b, Rank, Out); return b; }
        return new LoraModuleState(Layer, Target, Rank, In, Out, (float[])a.Clone(), T(bt), (float[])ma.Clone(), (float[])va.Clone(), T(mbt), T(vbt));
    }

    /// <summary>(out, r) from (r, out) or back.</summary>
    public static void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
    }
}

/// <summary>The LoRA parameters of a training run: one <see cref="LoraModule"/> per target module per layer, ordered by
/// layer then target.</summary>
internal sealed class LoraParameters
{
    private readonly LoraModule?[] _byIndex; // (layers * LoraTargets.Count)

    public int Rank { get; }
    public double Alpha { get; }
    public float Scale { get; }
    public IReadOnlyList<LoraTarget> Targets { get; }
    public IReadOnlyList<LoraModule> Modules { get; }

    private LoraParameters(ModelConfig c, int rank, double alpha, IReadOnlyList<LoraTarget> targets)
    {
        Rank = rank;
        Alpha = alpha;
        Scale = (float)(alpha / rank);
        Targets = targets.Order().ToArray();
        _byIndex = new LoraModule?[c.NumLayers * LoraTargets.Count];
        var modules = new List<LoraModule>();
        for (int l = 0; l < c.NumLayers; l++)
            foreach (var t in Targets)
            {
                var (i, o) = LoraTargets.Dims(c, t);
                var m = new LoraModule(l, t, rank, i, o);
                modules.Add(m);
                _byIndex[l * LoraTargets.Count + (int)t] = m;
            }
        Modules = modules;
    }

    public LoraModule? Find(int layer, LoraTarget target) => _byIndex[layer * LoraTargets.Count + (int)target];

    public long ParameterCount => Modules.Sum(m => (long)m.A.Length + m.Bt.Length);

    /// <summary>PEFT's default initialisation: A uniform in ±1/sqrt(in) (kaiming_uniform with a = sqrt(5)), drawn from the
    /// seed module by module in order; B zero (so the adapter starts as the base model).</summary>
    public static LoraParameters Initialize(ModelConfig c, int rank, double alpha, IReadOnlyList<LoraTarget> targets, ulong seed)
    {
        var p = new LoraParameters(c, rank, alpha, targets);
        var rng = new Rng(seed ^ 0x4C6F52415F696E69UL);
        foreach (var m in p.Modules)
        {
            double bound = 1 / Math.Sqrt(m.In);
            for (int i = 0; i < m.A.Length; i++) m.A[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        }
        return p;
    }

    /// <summary>Starts from an existing adapter (its rank, alpha and targets). rsLoRA adapters and adapters on a subset of
    /// layers are refused: the trainer scales by alpha / r and trains every layer.</summary>
    public static LoraParameters FromAdapter(ModelConfig c, PeftAdapter adapter)
    {
        var cfg = adapter.Config;
        if (cfg.UseRsLora) throw new ArgumentException("the initial adapter uses rsLoRA; training continues only alpha/r adapters");
        if (cfg.LayersToTransform is not null) throw new ArgumentException("the initial adapter covers only some layers (layers_to_transform); training needs every layer");
        var p = new LoraParameters(c, cfg.Rank, cfg.Alpha, cfg.Targets);
        foreach (var m in p.Modules)
        {
            var w = adapter.Find(m.Layer, m.Target) ?? throw new ArgumentException($"the initial adapter lacks layer {m.Layer} {LoraTargets.Name(m.Target)}");
            w.A.CopyTo(m.A, 0);
            LoraModule.Transpose(w.B, m.Bt, m.Out, m.Rank);
        }
        return p;
    }

    public static LoraParameters FromSnapshot(ModelConfig c, TrainingSnapshot s)
    {
        var targets = s.Modules.Select(m => m.Target).Distinct().ToArray();
        var p = new LoraParameters(c, s.Rank, s.Alpha, targets);
        if (p.Modules.Count != s.Modules.Count) throw new ArgumentException("the snapshot does not cover every layer of its target modules");
        foreach (var sm in s.Modules)
        {
            var m = p.Find(sm.Layer, sm.Target);
            if (m is null || sm.Rank != m.Rank || sm.In != m.In || sm.Out != m.Out) throw new ArgumentException("the snapshot does not fit the base model");
            sm.A.CopyTo(m.A, 0);
            sm.MA.CopyTo(m.MA, 0);
            sm.VA.CopyTo(m.VA, 0);
            LoraModule.Transpose(sm.B, m.Bt, m.Out, m.Rank);
            LoraModule.Transpose(sm.MB, m.MBt, m.Out, m.Rank);
            LoraModule.Transpose(sm.VB, m.VBt, m.Out, m.Rank);
        }
        return p;
    }

    /// <summary>Copies of every module's weights and moments in PEFT's layout.</summary>
    public IReadOnlyList<LoraModuleState> ExportStates() => Modules.Select(m => m.State(m.A, m.Bt, m.MA, m.VA, m.MBt, m.VBt)).ToArray();

    public IReadOnlyList<LoraWeights> ExportWeights() => Modules.Select(m =>
    {
        var b = new float[m.Bt.Length];
        LoraModule.Transpose(m.Bt, b, m.Rank, m.Out);
        return new LoraWeights(m.Layer, m.Target, m.Rank, m.In, m.Out, (float[])m.A.Clone(), b);
    }).ToArray();

    public void ZeroGradients()
    {
        foreach (var m in Modules)
        {
            Array.Clear(m.GA);
            Array.Clear(m.GBt);
        }
    }
}
