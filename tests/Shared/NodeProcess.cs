using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Loom.Tests.Shared;

/// <summary>The real Loom host (Loom.Web.dll, built beside the tests) as its own process with the roles and settings
/// given (or another host built beside the tests, such as the front, Loom.Front.dll), so a test can kill it with
/// SIGKILL. Waits for <c>readyPath</c>: /readyz by default (an inference node is ready once its engine answers and its
/// heartbeat is written), /healthz where a test wants the process up before its dependencies are. Needs no test
/// framework (a failed start throws), so a benchmark can start nodes with it too.</summary>
public sealed class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _output = [];

    public string Name { get; }
    public Uri BaseAddress { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>Several processes starting at once on a loaded 2-core machine are slow; a healthy start takes ~10 s.</summary>
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(300);

    private NodeProcess(string name, Process process, Uri baseAddress) => (Name, _process, BaseAddress) = (name, process, baseAddress);

    public static async Task<NodeProcess> StartAsync(string name, string roles, IReadOnlyDictionary<string, string> settings, int? port = null,
        string assembly = "Loom.Web.dll", string readyPath = "/readyz")
    {
        var dll = Path.Combine(AppContext.BaseDirectory, assembly);
        if (!File.Exists(dll)) throw new FileNotFoundException($"missing {dll}", dll);
        var url = new Uri($"http://127.0.0.1:{port ?? FreePort()}");
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
        var node = new NodeProcess(name, Process.Start(psi)!, url);
        node._process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (node._output) node._output.Add(e.Data); };
        node._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (node._output) node._output.Add(e.Data); };
        node._process.BeginOutputReadLine();
        node._process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartLimit && !node._process.HasExited)
        {
            try { if ((await http.GetAsync(readyPath)).StatusCode == HttpStatusCode.OK) return node; }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { }
            await Task.Delay(250);
        }
        var output = node.Output;
        await node.DisposeAsync();
        throw new TimeoutException($"Loom node {name} ({roles}) was not ready within {StartLimit.TotalSeconds:F0} s: {output}");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public string Output { get { lock (_output) return string.Join("\n", _output.TakeLast(60)); } }

    /// <summary>SIGKILL: no shutdown (no goodbye to the routing table, no fine-tune re-queued, no lease released);
    /// open connections are reset by the kernel.</summary>
    public void KillHard()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _process.Kill(); // SIGKILL to the host itself (it starts no children)
        _process.WaitForExit();
    }

    private bool _disposed;

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
