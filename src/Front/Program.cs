// Loom's HTTP front for a cluster on loopback (deploy/cluster/run.sh): a YARP reverse proxy spreading requests over
// the API+web nodes named in Front:Nodes, with health checks, so a node that dies leaves the rotation within about a
// second (ProxyConfig).
using Loom.Front;

var builder = WebApplication.CreateBuilder(args);
var options = builder.Configuration.GetSection(FrontOptions.SectionName).Get<FrontOptions>() ?? new FrontOptions();
if (options.Problem() is { } problem)
{
    Console.Error.WriteLine(problem);
    return 2;
}
var (routes, clusters) = ProxyConfig.Build(options);
builder.Services.AddReverseProxy().LoadFromMemory(routes, clusters);
builder.Services.Configure<Yarp.ReverseProxy.Health.TransportFailureRateHealthPolicyOptions>(o => ProxyConfig.ConfigurePassive(o, options));

var app = builder.Build();
// The front's own liveness, answered here (everything else goes to a node).
app.MapGet("/front/healthz", () => Results.Text("ok"));
app.MapReverseProxy();
app.Run();
return 0;
