namespace Loom.Inference.Training;

/// <summary>
/// Host buffers a training run copies its state into at a scheduled checkpoint: one set per run, allocated once and
/// reused, in the trainer's own layout (B and its moments transposed, as <see cref="LoraModule"/> holds them), so the copy
/// on the engine loop is six straight memory copies per module and allocates nothing. The snapshot made over them turns
/// them into PEFT's layout when it is first read (by the checkpoint writer, off the loop). The run hands the buffers to
/// its next checkpoint only after the previous one's write has completed; a snapshot not read by then is detached and
/// refuses to be read rather than return another step's state.
/// </summary>
internal sealed class SnapshotStaging
{
    /// <summary>Per module, in <see cref="LoraParameters.Modules"/> order: A, MA, VA (r, in) and Bt, MBt, VBt (r, out).</summary>
    internal readonly float[][] A, MA, VA, Bt, MBt, VBt;
    private readonly LoraParameters _p;
    private int _generation;

    public SnapshotStaging(LoraParameters p)
    {
        _p = p;
        int n = p.Modules.Count;
        A = new float[n][]; MA = new float[n][]; VA = new float[n][]; Bt = new float[n][]; MBt = new float[n][]; VBt = new float[n][];
        for (int i = 0; i < n; i++)
        {
            var m = p.Modules[i];
            A[i] = new float[m.A.Length]; MA[i] = new float[m.A.Length]; VA[i] = new float[m.A.Length];
            Bt[i] = new float[m.Bt.Length]; MBt[i] = new float[m.Bt.Length]; VBt[i] = new float[m.Bt.Length];
        }
        CopyFrom(p); // touches every page now, so the first checkpoint's copy on the loop takes no page faults
    }

    public IReadOnlyList<LoraModule> Modules => _p.Modules;

    /// <summary>Bumped at every copy: a snapshot made at an older generation can no longer read the buffers.</summary>
    public int Generation => Volatile.Read(ref _generation);

    /// <summary>Copies the parameters' weights and moments in (loop thread); returns the new generation.</summary>
    public int CopyFrom(LoraParameters p)
    {
        int g = Interlocked.Increment(ref _generation);
        for (int i = 0; i < p.Modules.Count; i++)
        {
            var m = p.Modules[i];
            m.A.AsSpan().CopyTo(A[i]); m.MA.AsSpan().CopyTo(MA[i]); m.VA.AsSpan().CopyTo(VA[i]);
            m.Bt.AsSpan().CopyTo(Bt[i]); m.MBt.AsSpan().CopyTo(MBt[i]); m.VBt.AsSpan().CopyTo(VBt[i]);
        }
        return g;
    }

    /// <summary>The states in PEFT's layout, freshly allocated (B and its moments transposed back).</summary>
    public IReadOnlyList<LoraModuleState> Export()
    {
        var states = new LoraModuleState[_p.Modules.Count];
        for (int i = 0; i < states.Length; i++) states[i] = _p.Modules[i].State(A[i], Bt[i], MA[i], VA[i], MBt[i], VBt[i]);
        return states;
    }
}
