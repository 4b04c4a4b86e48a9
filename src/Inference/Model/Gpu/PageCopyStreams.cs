using ILGPU;
using ILGPU.Runtime;

namespace Loom.Inference.Model.Gpu;

/// <summary>The two streams of a <see cref="DevicePoolMirror"/>'s page copies, apart from the forward pass's default
/// stream. Device → host (KV swap-out): issued between steps and not waited for there, so a copy runs under the next
/// steps' kernels; each has a ticket, and a wait for a ticket (on any thread: ILGPU binds the accelerator's context on the
/// thread that synchronizes a stream) waits for every copy issued up to it, as a stream runs its copies in order.
/// Host → device (page uploads): the forward pass waits for them (<see cref="WaitUploads"/>) before its first kernel.
/// ILGPU 1.5.3 has no events outside profiling, so a wait synchronizes the stream. Copies from and to the host pool's
/// buffer, page-locked where the accelerator allows it (pageable memory works too, with copies that block longer).
/// <see cref="Lazy"/> (tests): a copy runs only when a wait needs it, all pending ones in issue order, the latest an
/// asynchronous stream may run it, so that an ordering the code lacks shows as wrong bytes on ILGPU's CPU accelerator,
/// whose copies are otherwise done when the call returns.</summary>
internal sealed unsafe class PageCopyStreams(Accelerator a) : IDisposable
{
    private readonly record struct Copy(bool ToHost, ArrayView<float> Device, nint Host, long Floats);

    private readonly AcceleratorStream _down = a.CreateStream(), _up = a.CreateStream();
    private readonly object _sync = new();
    private long _issued, _done;  // device → host copies issued so far; known landed (tickets count from 1)
    private bool _uploading;      // host → device copies issued since the last WaitUploads (the forward pass's thread)
    private List<Copy>? _lazy;    // (tests) copies not run yet, in issue order

    /// <summary>Copies run only when waited for (tests). Set it before the first copy.</summary>
    public bool Lazy
    {
        get => _lazy is not null;
        set
        {
            lock (_sync)
            {
                RunLazy();
                _lazy = value ? [] : null;
            }
        }
    }

    /// <summary>Device → host copies issued and not known to have landed.</summary>
    public bool AnyInFlight => Volatile.Read(ref _done) < Volatile.Read(ref _issued);

    /// <summary>Whether the device → host copies up to <paramref name="ticket"/> are known to have landed.</summary>
    public bool Done(long ticket) => Volatile.Read(ref _done) >= ticket;

    /// <summary>Issues a copy of <paramref name="floats"/> floats of <paramref name="device"/> to <paramref name="host"/>;
    /// returns its ticket. The forward pass's thread, between steps.</summary>
    public long ToHost(ArrayView<float> device, float* host, long floats)
    {
        if (_lazy is { } lazy)
        {
            lock (_sync)
            {
                lazy.Add(new Copy(true, device, (nint)host, floats));
                return ++_issued;
            }
        }
        device.SubView(0, floats).CopyToCPUUnsafeAsync(_down, ref *host, floats);
        return Interlocked.Increment(ref _issued); // after the copy is on the stream: a wait that reads this covers it
    }

    /// <summary>Issues a copy of <paramref name="floats"/> floats from <paramref name="host"/> to <paramref name="device"/>.
    /// The forward pass's thread; <see cref="WaitUploads"/> before a kernel reads them.</summary>
    public void ToDevice(ArrayView<float> device, float* host, long floats)
    {
        _uploading = true;
        if (_lazy is { } lazy)
        {
            lock (_sync) lazy.Add(new Copy(false, device, (nint)host, floats));
            return;
        }
        device.SubView(0, floats).CopyFromCPUUnsafeAsync(_up, ref *host, floats);
    }

    /// <summary>Waits for the uploads issued so far (the forward pass's thread, before its first kernel).</summary>
    public void WaitUploads()
    {
        if (!_uploading) return;
        _uploading = false;
        if (_lazy is null) _up.Synchronize();
        else lock (_sync) RunLazy();
    }

    /// <summary>Waits for the device → host copies up to <paramref name="ticket"/>. Any thread.</summary>
    public void Wait(long ticket)
    {
        if (Done(ticket)) return;
        lock (_sync)
        {
            if (Done(ticket)) return;
            long upTo = Volatile.Read(ref _issued); // every copy with a ticket up to this is on the stream
            if (_lazy is null) _down.Synchronize();
            else RunLazy();
            Volatile.Write(ref _done, upTo);
        }
    }

    /// <summary>Waits for every copy, both ways (before the host buffer is let go).</summary>
    public void WaitAll()
    {
        if (_lazy is not null)
            lock (_sync) RunLazy();
        Wait(Volatile.Read(ref _issued));
        _up.Synchronize();
        _uploading = false;
    }

    /// <summary>(Under the lock) runs the lazy copies in issue order.</summary>
    private void RunLazy()
    {
        if (_lazy is not { Count: > 0 } lazy) return;
        foreach (var c in lazy)
        {
            if (c.ToHost) c.Device.SubView(0, c.Floats).CopyToCPUUnsafeAsync(_down, ref *(float*)c.Host, c.Floats);
            else c.Device.SubView(0, c.Floats).CopyFromCPUUnsafeAsync(_up, ref *(float*)c.Host, c.Floats);
        }
        lazy.Clear();
        _down.Synchronize();
        _up.Synchronize();
        Volatile.Write(ref _done, _issued);
    }

    public void Dispose()
    {
        try { WaitAll(); }
        finally
        {
            _down.Dispose();
            _up.Dispose();
        }
    }
}
