using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Memory;
using Loom.Inference.Model.Gpu;

namespace Loom.Inference.Tests.Gpu;

/// <summary>The pool mirror's page copies run on copy streams and are waited for only where their bytes are needed
/// (decision 010). ILGPU's CPU accelerator copies before the call returns, so these tests run the copies lazily (only when
/// a wait needs them, in issue order: the latest a stream may run them); an ordering the mirror lacked would then give the
/// wrong bytes here.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuPageCopyOrderTests
{
    private const int PageFloats = 64;

    private sealed class Fixture : IDisposable
    {
        public readonly GpuAccelerator Device = GpuAccelerator.Cpu();
        public readonly PagePool Pool = new(8L * PageFloats * sizeof(float), PageFloats);
        public readonly DevicePoolMirror Mirror;

        public Fixture() => Mirror = new DevicePoolMirror(Device.Accelerator, Pool) { LazyCopies = true };

        /// <summary>The host writes <paramref name="value"/> into the pages (as an adapter load or swap-in does after
        /// allocating them); a step uploads them.</summary>
        public void HostWrites(ReadOnlySpan<int> ids, float value)
        {
            foreach (int id in ids) Pool.Page(id).Fill(value);
            Mirror.Sync(ids);
            Mirror.WaitUploads();
        }

        /// <summary>The forward pass writes <paramref name="value"/> into the pages on the device (as attention stores KV).</summary>
        public void DeviceWrites(ReadOnlySpan<int> ids, float value)
        {
            var rows = Enumerable.Repeat(value, PageFloats).ToArray();
            foreach (int id in ids)
            {
                Mirror.Pages.SubView((long)id * PageFloats, PageFloats).CopyFromCPU(rows);
                Mirror.Written(id);
            }
        }

        public float[] OnDevice(int id)
        {
            var rows = new float[PageFloats];
            Mirror.Pages.SubView((long)id * PageFloats, PageFloats).CopyToCPU(rows);
            return rows;
        }

        public void Dispose()
        {
            Mirror.Dispose();
            Pool.Dispose();
            Device.Dispose();
        }
    }

    private static void AllAre(float value, ReadOnlySpan<float> page, string what)
    {
        foreach (float x in page)
            if (x != value) Assert.Fail($"{what}: {x}, expected {value}");
    }

    [Fact]
    public void TheHostReadsSwappedOutPagesOnlyAfterTheirCopyLands()
    {
        using var f = new Fixture();
        int[] ids = new int[3];
        Assert.True(f.Pool.TryAllocate(PageOwner.Kv(1), ids));
        f.HostWrites(ids, 1f);
        f.DeviceWrites(ids, 2f);

        var copies = f.Mirror.ToHost(ids);
        Assert.Same(f.Mirror, copies.Device);
        AllAre(1f, f.Pool.Page(ids[0]), "issued, not waited for"); // the copy has not run: the host must wait

        // a second swap of a page still being copied (two caches share it) waits for that copy too
        var again = f.Mirror.ToHost(ids.AsSpan(1, 1));
        again.Wait();
        AllAre(2f, f.Pool.Page(ids[1]), "the earlier copy of a shared page");
        copies.Wait();
        foreach (int id in ids) AllAre(2f, f.Pool.Page(id), $"page {id} after the wait");
        Assert.Equal(default, f.Mirror.ToHost(ids)); // nothing newer on the device, nothing in flight
    }

    [Fact]
    public void APageHandedOutAgainBeforeItsCopyWasWaitedForHoldsWhatItsNewOwnerWrote()
    {
        using var f = new Fixture();
        int[] ids = new int[2];
        Assert.True(f.Pool.TryAllocate(PageOwner.Kv(1), ids));
        f.HostWrites(ids, 1f);
        f.DeviceWrites(ids, 2f);
        var copies = f.Mirror.ToHost(ids); // a swap-out's copy, not waited for

        f.Pool.Free(PageOwner.Kv(1), ids);
        int[] again = new int[f.Pool.FreePages];
        Assert.True(f.Pool.TryAllocate(PageOwner.Adapter(3), again)); // every page: the two above among them
        Assert.Subset(again.ToHashSet(), ids.ToHashSet());
        f.HostWrites(again, 5f); // the new owner's bytes, uploaded by the next step

        foreach (int id in ids)
        {
            AllAre(5f, f.Pool.Page(id), $"host page {id}");
            AllAre(5f, f.OnDevice(id), $"device page {id}");
        }
        copies.Wait(); // the late wait of the swap-out changes nothing now
        foreach (int id in ids) AllAre(5f, f.Pool.Page(id), $"host page {id} after the swap-out's wait");
    }

    [Fact]
    public void TheForwardPassReadsUploadsOnlyAfterWaitingForThem()
    {
        using var f = new Fixture();
        int[] ids = new int[1];
        Assert.True(f.Pool.TryAllocate(PageOwner.Adapter(1), ids));
        f.HostWrites(ids, 7f);
        AllAre(7f, f.OnDevice(ids[0]), "uploaded");
        f.Pool.Free(PageOwner.Adapter(1), ids);
        int[] again = new int[1];
        Assert.True(f.Pool.TryAllocate(PageOwner.Adapter(2), again));
        Assert.Equal(ids, again);
        f.Pool.Page(again[0]).Fill(8f);
        f.Mirror.Sync(again);
        AllAre(7f, f.OnDevice(again[0]), "issued, not waited for"); // what a kernel launched before the wait would read
        f.Mirror.WaitUploads();
        AllAre(8f, f.OnDevice(again[0]), "after the wait");
    }
}
