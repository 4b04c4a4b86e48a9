using Loom.Api.Limits;
using Loom.Inference.Engine;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace Loom.Api.Tests;

/// <summary>
/// The Kubernetes manifests (deploy/k8s/loom.yaml) parsed and checked for wiring: every Deployment's pods carry the
/// settings their roles read, from objects that exist; probes on /healthz and /readyz at the port Loom listens on;
/// Services and disruption budgets select existing pods and reach that port; nothing names a setting Loom does not read.
/// </summary>
public class DeploymentManifestTests
{
    private static readonly string ManifestPath = Path.Combine(ChatModelFactory.RepoRoot(), "deploy", "k8s", "loom.yaml");

    /// <summary>Every environment variable Loom reads in a cluster (a name outside this set is a typo or a stale
    /// setting), with the configuration key it feeds.</summary>
    private static readonly Dictionary<string, string> Known = new()
    {
        ["ConnectionStrings__Loom"] = "ConnectionStrings:Loom",
        ["Loom__Roles"] = "Loom:Roles",
        ["Inference__ModelDirectory"] = "Inference:ModelDirectory",
        ["Api__RateLimits__Redis"] = "Api:RateLimits:Redis",
        ["Loom__Telemetry__ScrapeToken"] = "Loom:Telemetry:ScrapeToken",
        ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "OTEL_EXPORTER_OTLP_ENDPOINT",
        ["ASPNETCORE_URLS"] = "urls",
    };

    [Fact]
    public void TheKnownSettingsAreOnesLoomBinds()
    {
        // The option classes behind the bound keys have the properties the manifests set.
        Assert.NotNull(typeof(RateLimitOptions).GetProperty(nameof(RateLimitOptions.Redis)));
        Assert.NotNull(typeof(InferenceOptions).GetProperty(nameof(InferenceOptions.ModelDirectory)));
    }

    [Fact]
    public void EveryRoleIsWiredAsLoomExpects()
    {
        var docs = Load();
        Dictionary<string, object> Named(string kind, string name) =>
            docs.SingleOrDefault(d => Str(d, "kind") == kind && Str(Map(d, "metadata"), "name") == name)
            ?? throw new Xunit.Sdk.XunitException($"no {kind} named {name}");

        var config = Map(Named("ConfigMap", "loom-config"), "data");
        var urls = Str(config, "ASPNETCORE_URLS");
        int port = new Uri(urls.Replace("0.0.0.0", "localhost").Replace("+", "localhost")).Port;

        var deployments = docs.Where(d => Str(d, "kind") == "Deployment").ToList();
        Assert.Equal(["loom-jobs", "loom-serving", "loom-web"], deployments.Select(d => Str(Map(d, "metadata"), "name")).Order());
        var rolesSeen = new HashSet<string>();
        foreach (var d in deployments)
        {
            string name = Str(Map(d, "metadata"), "name");
            var spec = Map(d, "spec");
            var podLabels = Labels(Map(Map(spec, "template"), "metadata"), "labels");
            Assert.True(Subset(Labels(Map(spec, "selector"), "matchLabels"), podLabels), $"{name}: its selector does not match its pods");
            var container = Assert.Single(List(Map(Map(spec, "template"), "spec"), "containers")).As();

            // Environment: literal values, secrets that exist (with the key), the shared ConfigMap.
            var env = new Dictionary<string, string?>();
            foreach (var from in List(container, "envFrom").Select(e => e.As()))
            {
                var mapName = Str(Map(from, "configMapRef"), "name");
                foreach (var (k, v) in Map(Named("ConfigMap", mapName), "data")) env[(string)k] = v?.ToString();
            }
            foreach (var e in List(container, "env").Select(e => e.As()))
            {
                var key = Str(e, "name");
                if (e.TryGetValue("valueFrom", out var from))
                {
                    var secretRef = Map(from.As(), "secretKeyRef");
                    var secret = Named("Secret", Str(secretRef, "name"));
                    Assert.True(Map(secret, "stringData").ContainsKey(Str(secretRef, "key")), $"{name}: secret {Str(secretRef, "name")} has no key {Str(secretRef, "key")}");
                    env[key] = "(secret)";
                }
                else env[key] = Str(e, "value");
            }
            foreach (var key in env.Keys) Assert.True(Known.ContainsKey(key), $"{name}: {key} is not a setting Loom reads");

            var roles = env.GetValueOrDefault("Loom__Roles")?.Split(',', StringSplitOptions.TrimEntries) ?? [];
            Assert.NotEmpty(roles);
            Assert.All(roles, r => Assert.Contains(r, new[] { "web", "api", "jobs", "inference" }));
            rolesSeen.UnionWith(roles);
            var required = new List<string> { "ConnectionStrings__Loom", "Loom__Roles", "ASPNETCORE_URLS", "Loom__Telemetry__ScrapeToken" };
            if (roles.Contains("inference")) required.Add("Inference__ModelDirectory");
            if (roles.Contains("api") && Int(spec, "replicas") > 1) required.Add("Api__RateLimits__Redis"); // one budget across replicas
            foreach (var key in required) Assert.True(env.ContainsKey(key), $"{name} (roles {string.Join(",", roles)}) does not set {key}");

            // Port and probes.
            Assert.Contains(List(container, "ports").Select(p => Int(p.As(), "containerPort")), p => p == port);
            Assert.Equal(("/healthz", port), Probe(container, "livenessProbe"));
            Assert.Equal(("/readyz", port), Probe(container, "readinessProbe"));

            // A disruption budget keeps one pod of every group.
            var budget = docs.Where(x => Str(x, "kind") == "PodDisruptionBudget")
                .SingleOrDefault(b => Subset(Labels(Map(Map(b, "spec"), "selector"), "matchLabels"), podLabels));
            Assert.True(budget is not null, $"{name}: no PodDisruptionBudget selects its pods");
            Assert.True(Int(Map(budget, "spec"), "minAvailable") >= 1);
        }
        Assert.Equal(new HashSet<string> { "web", "api", "jobs", "inference" }, rolesSeen); // every role runs somewhere

        // Services reach pods that exist, on the port Loom listens on.
        foreach (var s in docs.Where(d => Str(d, "kind") == "Service"))
        {
            var spec = Map(s, "spec");
            var selector = Labels(spec, "selector");
            Assert.Contains(deployments, d => Subset(selector, Labels(Map(Map(Map(d, "spec"), "template"), "metadata"), "labels")));
            Assert.All(List(spec, "ports"), p => Assert.Equal(port, Int(p.As(), "targetPort")));
        }
        Assert.Contains(docs, d => Str(d, "kind") == "Service" && Labels(Map(d, "spec"), "selector").GetValueOrDefault("role") == "web");
    }

    private static (string, int) Probe(Dictionary<string, object> container, string kind)
    {
        var get = Map(Map(container, kind), "httpGet");
        return (Str(get, "path"), Int(get, "port"));
    }

    private static List<Dictionary<string, object>> Load()
    {
        var deserializer = new DeserializerBuilder().Build();
        var parser = new Parser(new StringReader(File.ReadAllText(ManifestPath)));
        parser.Consume<StreamStart>();
        var docs = new List<Dictionary<string, object>>();
        while (parser.Accept<DocumentStart>(out _))
            if (deserializer.Deserialize<Dictionary<object, object>>(parser) is { } doc)
                docs.Add(doc.ToDictionary(kv => (string)kv.Key, kv => kv.Value));
        Assert.NotEmpty(docs);
        return docs;
    }

    private static Dictionary<string, object> Map(Dictionary<string, object> d, string key) =>
        d.TryGetValue(key, out var v) && v is not null ? v.As() : throw new Xunit.Sdk.XunitException($"missing '{key}'");

    private static List<object> List(Dictionary<string, object> d, string key) =>
        d.TryGetValue(key, out var v) && v is List<object> l ? l : [];

    private static string Str(Dictionary<string, object> d, string key) => d.TryGetValue(key, out var v) ? v?.ToString() ?? "" : "";

    private static int Int(Dictionary<string, object> d, string key) => int.Parse(Str(d, key), System.Globalization.CultureInfo.InvariantCulture);

    private static Dictionary<string, string> Labels(Dictionary<string, object> d, string key) =>
        Map(d, key).ToDictionary(kv => kv.Key, kv => kv.Value.ToString()!);

    private static bool Subset(Dictionary<string, string> selector, Dictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);
}

internal static class YamlNodes
{
    public static Dictionary<string, object> As(this object node) => node is Dictionary<object, object> d
        ? d.ToDictionary(kv => (string)kv.Key, kv => kv.Value)
        : throw new Xunit.Sdk.XunitException($"expected a mapping, found {node}");
}
