using System.Diagnostics;

namespace Loom.Jobs.Tests;

/// <summary>A real jobs process (tests/Jobs.Worker: Loom's AddJobs with a server, plus probe jobs).</summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _output = [];

    public int Pid => _process.Id;

    private WorkerProcess(Process process) => _process = process;

    public static async Task<WorkerProcess> StartAsync(IReadOnlyDictionary<string, string> settings)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Loom.Jobs.Worker.dll");
        Assert.True(File.Exists(dll), $"missing {dll}");
        var psi = new ProcessStartInfo("dotnet", [dll])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var (k, v) in settings) psi.Environment[k.Replace(":", "__")] = v;
        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        var worker = new WorkerProcess(Process.Start(psi)!);
        var ready = new TaskCompletionSource();
        worker._process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (worker._output) worker._output.Add(e.Data);
            if (e.Data.StartsWith("ready", StringComparison.Ordinal)) ready.TrySetResult();
        };
        worker._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (worker._output) worker._output.Add(e.Data); };
        worker._process.BeginOutputReadLine();
        worker._process.BeginErrorReadLine();
        var started = await Task.WhenAny(ready.Task, worker._process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(ready.Task.IsCompleted, $"worker did not start: {worker.Output}");
        return worker;
    }

    public string Output { get { lock (_output) return string.Join("\n", _output); } }

    /// <summary>SIGKILL: no shutdown, no re-queue; its running jobs stay fetched until their invisibility ends.</summary>
    public void KillHard()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
