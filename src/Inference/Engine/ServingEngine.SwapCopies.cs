using System.Collections.Concurrent;
using System.Diagnostics;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    // ---- swap copies (FastSwitch-style: on their own thread, overlapped with the forward pass) ------------------

    /// <summary>The thread that runs swap copies one after another while the engine thread computes.</summary>
    private sealed class SwapCopier : IDisposable
    {
        private readonly BlockingCollection<(Action Work, TaskCompletionSource Done)> _queue = [];
        private readonly Thread _thread;

        public SwapCopier()
        {
            _thread = new Thread(Work) { IsBackground = true, Name = "loom-swap-copy" };
            _thread.Start();
        }

        public Task Start(Action copy)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Add((copy, done));
            return done.Task;
        }

        private void Work()
        {
            foreach (var (copy, done) in _queue.GetConsumingEnumerable())
            {
                try
                {
                    copy();
                    done.SetResult();
                }
                catch (Exception e) { done.SetException(e); }
            }
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join();
            _queue.Dispose();
        }
    }

    /// <summary>Starts a copy of the request's KV on the copy thread: a swap out or in.</summary>
    private void StartCopy(Request r, SwapState kind, Action copy)
    {
        if (kind is not (SwapState.CopyingOut or SwapState.CopyingIn)) throw new ArgumentOutOfRangeException(nameof(kind));
        var cache = r.Cache;
        r.Swap = kind;
        Action run = SwapCopyHook is { } swap ? () => { swap(cache, kind == SwapState.CopyingOut); copy(); } : copy;
        r.Copy = _copier.Start(run);
        _copies.Add(r);
    }

    /// <summary>Takes back a copy that is done. Out: the pages return to the pool, or, when the sequence is being
    /// readmitted, it keeps them and drops the host copy (nothing to copy back); a failed copy out keeps the pages and
    /// drops the host copy. In: the cache is whole and the host copy freed (a failed copy in throws: the request ends).
    /// InUndone: the pages return, the host copy stays, unless the sequence is being readmitted and the copy
    /// succeeded: then the copy back is complete. An orphan (its request left meanwhile) frees everything.</summary>
    private void TakeBack(Request r, bool readmit)
    {
        var copy = r.Copy!;
        var kind = r.Swap;
        r.Copy = null;
        r.Swap = SwapState.Swapped; // the host copy stays unless a case below drops or completes it
        _copies.Remove(r);
        bool ok = copy.IsCompletedSuccessfully;
        var host = r.Host;
        switch (kind)
        {
            case SwapState.Orphaned:
                DropHost(r);
                r.Cache.Release();
                break;
            case SwapState.CopyingOut when ok && !readmit:
                r.Cache.Release();
                break;
            case SwapState.CopyingOut: // readmitted, or the copy failed: the pages still hold the tokens
                DropHost(r);
                break;
            case SwapState.CopyingIn:
                copy.GetAwaiter().GetResult();
                r.Host = null;
                r.Swap = SwapState.None;
                host!.Owner.CompleteSwapIn(host, r.Cache);
                break;
            case SwapState.CopyInUndone when ok && readmit:
                r.Host = null;
                r.Swap = SwapState.None;
                host!.Owner.CompleteSwapIn(host, r.Cache);
                break;
            case SwapState.CopyInUndone:
                r.Cache.Release();
                break;
            default:
                throw new InvalidOperationException($"a copy was taken back in state {kind}");
        }
    }

    /// <summary>Frees a request's host copy (if any): its KV is in its pages only, or nowhere.</summary>
    private static void DropHost(Request r)
    {
        var host = r.Host;
        r.Host = null;
        r.Swap = SwapState.None;
        host?.Owner.Drop(host);
    }

    /// <summary>Takes back every copy that is done (at the start of an iteration): swapped-out pages return to the
    /// pool, copies in become runnable, orphans are freed.</summary>
    private void ReapCopies()
    {
        for (int i = _copies.Count - 1; i >= 0; i--)
        {
            if (i >= _copies.Count) continue;
            var r = _copies[i];
            if (!r.Copy!.IsCompleted) continue;
            try { TakeBack(r, readmit: false); }
            catch (Exception error) { Fail(r, error); }
        }
    }

    /// <summary>Nothing to compute: wait for the next copy to finish (or a new request, or 5 ms). stalled: work waits
    /// for it, so the wait counts as engine time lost to swapping.</summary>
    private void WaitForCopies(bool stalled)
    {
        long start = Stopwatch.GetTimestamp();
        WaitHandle.WaitAny([_wake, ((IAsyncResult)_copies[0].Copy!).AsyncWaitHandle], 5);
        if (stalled) Interlocked.Add(ref _c.SwapWaitTicks, Stopwatch.GetTimestamp() - start);
    }
}
