using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Formats;
using Loom.Inference.Memory;

namespace Loom.Inference.Model.Gpu;

/// <summary>The page tables of resident adapters on the device. An adapter seen by a batch for the first time gets a slot:
/// its page table goes into an int arena, its module layout (per layer and target: rank, A's and Bᵀ's offsets into the
/// arena) into the slot's block of <see cref="Modules"/>, its scale into <see cref="Scales"/>, and its pages into the pool
/// mirror. A residency never changes (a reload is a new one), so later batches upload only each token's slot. When the
/// slots or the arena run out, everything is dropped and the batch's adapters are uploaded again.</summary>
internal sealed class DeviceAdapterTables : IDisposable
{
    public const int MaxSlots = 4096;

    private readonly Dictionary<AdapterResidency, int> _slots = new(ReferenceEqualityComparer.Instance);
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _arena;   // (ArenaInts) page ids of the adapters' tables
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _modules; // (MaxSlots, layers, targets, 3) rank, A offset, Bᵀ offset
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _scales; // (MaxSlots)
    private readonly int[] _block;                                  // (layers * targets * 3) host staging of one slot
    private readonly int _layers;
    private int _arenaUsed;

    public ArrayView<int> Arena => _arena.View;
    public ArrayView<int> Modules => _modules.View;
    public ArrayView<float> Scales => _scales.View;

    public DeviceAdapterTables(Accelerator a, int layers, int pageCount)
    {
        _layers = layers;
        _arena = a.Allocate1D<int>(Math.Max(2L * pageCount, 1 << 16));
        _modules = a.Allocate1D<int>((long)MaxSlots * layers * LoraTargets.Count * 3);
        _scales = a.Allocate1D<float>(MaxSlots);
        _block = new int[layers * LoraTargets.Count * 3];
    }

    /// <summary>Makes room for the adapters of a batch that have no slot yet: drops every slot if they would not fit.</summary>
    public void Prepare(ReadOnlySpan<AdapterResidency?> adapters)
    {
        int newSlots = 0;
        long newInts = 0;
        foreach (var r in adapters)
            if (r is not null && !_slots.ContainsKey(r)) { newSlots++; newInts += r.PageCount; }
        if (newSlots == 0) return;
        if (_slots.Count + newSlots > MaxSlots || _arenaUsed + newInts > _arena.Length)
        {
            _slots.Clear();
            _arenaUsed = 0;
        }
    }

    /// <summary>The slot of <paramref name="r"/>, uploading it on first sight (call <see cref="Prepare"/> for the batch first).</summary>
    public int SlotOf(AdapterResidency r, DevicePoolMirror mirror)
    {
        if (_slots.TryGetValue(r, out int slot)) return slot;
        if (r.Layers != _layers) throw new ArgumentException($"adapter '{r.AdapterId}' has {r.Layers} layers; the model has {_layers}");
        if (r.Format != AdapterPageFormat.F32)
            throw new NotSupportedException($"the GPU backend reads f32 adapter pages; adapter '{r.AdapterId}' is stored as {r.Format.Name()} (Inference:AdapterPageFormat = bf16 is for the CPU backend)");
        slot = _slots.Count;
        int at = _arenaUsed;
        _arena.AsContiguous().SubView(at, r.PageCount).CopyFromCPU(r.PageTable);
        _arenaUsed += r.PageCount;
        for (int l = 0; l < _layers; l++)
            for (int t = 0; t < LoraTargets.Count; t++)
            {
                var m = r.Layout(l, (LoraTarget)t);
                int b = (l * LoraTargets.Count + t) * 3;
                _block[b] = m.Rank;
                _block[b + 1] = at + m.AOffset;
                _block[b + 2] = at + m.BOffset;
            }
        _modules.AsContiguous().SubView((long)slot * _block.Length, _block.Length).CopyFromCPU(_block);
        _scales.AsContiguous().SubView(slot, 1).CopyFromCPU([r.Scale]);
        mirror.Sync(r.PageTable);
        _slots.Add(r, slot);
        return slot;
    }

    public void Dispose()
    {
        _arena.Dispose();
        _modules.Dispose();
        _scales.Dispose();
    }
}
