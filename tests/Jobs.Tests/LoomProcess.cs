using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Loom.Jobs.Tests;

/// <summary>The real Loom host (Loom.Web.dll, built beside the tests) as its own process, with the roles and settings
/// given, so a test can kill it with SIGKILL.</summary>
public sealed class LoomProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _output = [];

    public int Pid => _process.Id;
    public string Name { get; }
    public Uri BaseAddress { get; }

    private LoomProcess(string name, Process process, Uri baseAddress) => (Name, _process, BaseAddress) = (name, process, baseAddress);

    /// <summary>How long a start may take (several processes starting at once on a loaded 2-core machine are slow).</summary>
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(300);

    public static async Task<LoomProcess> StartAsync(string name, string roles, IReadOnlyDictionary<string, string> settings)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Loom.Web.dll");
        Assert.True(File.Exists(dll), $"missing {dll}");
        var url = new Uri($"http://127.0.0.1:{FreePort()}");
        var psi = new ProcessStartInfo("dotnet", [dll])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var (k, v) in settings) psi.Environment[k.Replace(":", "__")] = v;
        psi.Environment["Loom__Roles"] = roles;
        psi.Environment["ASPNETCORE_URLS"] = url.ToString();
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        var node = new LoomProcess(name, Process.Start(psi)!, url);
        node._process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (node._output) node._output.Add(e.Data); };
        node._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (node._output) node._output.Add(e.Data); };
        node._process.BeginOutputReadLine();
        node._process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(2) };
        bool up = await JobsDatabase.UntilAsync(async () =>
        {
            if (node._process.HasExited) return true;
            try { return (await http.GetAsync("/healthz")).StatusCode == HttpStatusCode.OK; }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return false; }
        }, StartLimit);
        if (up && !node._process.HasExited) return node;
        string output = node.Output;
        await node.DisposeAsync();
        Assert.Fail($"Loom ({roles}) did not start within {StartLimit.TotalSeconds:F0} s: {output}");
        return node;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public string Output { get { lock (_output) return string.Join("\n", _output.TakeLast(60)); } }

    /// <summary>SIGKILL: no shutdown, no re-queue, no lease released; the job it ran stays fetched until its invisibility ends.</summary>
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
