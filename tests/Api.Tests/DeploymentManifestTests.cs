using Loom.Api.Limits;
using Loom.Inference.Engine;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace Loom.Api.Tests;

/// <summary>
/// The Kubernetes manifests (deploy/k8s/loom.yaml) parsed and checked for wiring: a Deployment per role (API+web,
/// inference, jobs) whose pods carry the settings their roles read, from objects that exist; inference nodes listen for
/// the RPC on a declared port and advertise it, API nodes share their token; every role mounts the shared blob volume
/// and the model folders where its settings point; probes on /healthz and /readyz at the port Loom listens on;
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
        ["Loom__Blobs__Root"] = "Loom:Blobs:Root",
        ["Cluster__InternalUrl"] = "Cluster:InternalUrl",
        ["Cluster__AdvertisedUrl"] = "Cluster:AdvertisedUrl",
        ["Cluster__InternalToken"] = "Cluster:InternalToken",
        ["Inference__Models__0__Name"] = "Inference:Models:0:Name",
        ["Inference__Models__0__Directory"] = "Inference:Models:0:Directory",
        ["Inference__Models__0__WeightFormat"] = "Inference:Models:0:WeightFormat",
    };

    [Fact]
    public void TheKnownSettingsAreOnesLoomBinds()
    {
        // The option classes behind the bound keys have the properties the manifests set.
        Assert.NotNull(typeof(RateLimitOptions).GetProperty(nameof(RateLimitOptions.Redis)));
        Assert.NotNull(typeof(InferenceOptions).GetProperty(nameof(InferenceOptions.ModelDirectory)));
        Assert.NotNull(typeof(InferenceOptions).GetProperty(nameof(InferenceOptions.Models)));
        foreach (var p in new[] { nameof(ServedModelOptions.Name), nameof(ServedModelOptions.Directory), nameof(ServedModelOptions.WeightFormat) })
            Assert.NotNull(typeof(ServedModelOptions).GetProperty(p));
        foreach (var p in new[] { nameof(Loom.Cluster.ClusterOptions.InternalUrl), nameof(Loom.Cluster.ClusterOptions.AdvertisedUrl), nameof(Loom.Cluster.ClusterOptions.InternalToken) })
            Assert.NotNull(typeof(Loom.Cluster.ClusterOptions).GetProperty(p));
        Assert.NotNull(typeof(Loom.Data.Blobs.BlobStoreOptions).GetProperty(nameof(Loom.Data.Blobs.BlobStoreOptions.Root)));
        Assert.Equal("Cluster", Loom.Cluster.ClusterOptions.SectionName);
        Assert.Equal("Inference", InferenceOptions.SectionName);
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
        Assert.Equal(["loom-api", "loom-inference", "loom-jobs"], deployments.Select(d => Str(Map(d, "metadata"), "name")).Order());
        var rolesSeen = new HashSet<string>();
        var tokens = new HashSet<string>(); // the secret key each side of the RPC reads its token from
        var blobClaims = new HashSet<string>();
        var modelMounts = new Dictionary<string, string>(); // model folder -> the claim inference pods read it from
        var apiClaimOf = new List<(string Name, Func<string, string> ClaimOf)>();
        foreach (var d in deployments)
        {
            string name = Str(Map(d, "metadata"), "name");
            var spec = Map(d, "spec");
            var podLabels = Labels(Map(Map(spec, "template"), "metadata"), "labels");
            Assert.True(Subset(Labels(Map(spec, "selector"), "matchLabels"), podLabels), $"{name}: its selector does not match its pods");
            var container = Assert.Single(List(Map(Map(spec, "template"), "spec"), "containers")).As();

            // Environment: literal values, secrets that exist (with the key), the pod's own fields, the shared ConfigMap.
            var env = new Dictionary<string, string?>();
            var podFields = new HashSet<string>();
            foreach (var from in List(container, "envFrom").Select(e => e.As()))
            {
                var mapName = Str(Map(from, "configMapRef"), "name");
                foreach (var (k, v) in Map(Named("ConfigMap", mapName), "data")) env[(string)k] = v?.ToString();
            }
            foreach (var e in List(container, "env").Select(e => e.As()))
            {
                var key = Str(e, "name");
                if (e.TryGetValue("valueFrom", out var from) && from.As().ContainsKey("fieldRef"))
                {
                    podFields.Add(key); // e.g. the pod's IP, for $(POD_IP) in a later value
                    env[key] = "(field)";
                }
                else if (from is not null)
                {
                    var secretRef = Map(from.As(), "secretKeyRef");
                    var secret = Named("Secret", Str(secretRef, "name"));
                    Assert.True(Map(secret, "stringData").ContainsKey(Str(secretRef, "key")), $"{name}: secret {Str(secretRef, "name")} has no key {Str(secretRef, "key")}");
                    env[key] = "(secret)";
                    if (key == "Cluster__InternalToken") tokens.Add($"{Str(secretRef, "name")}/{Str(secretRef, "key")}");
                }
                else
                {
                    env[key] = Str(e, "value");
                    // $(VAR) refers to a variable defined before it (Kubernetes leaves anything else as written).
                    foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(env[key]!, @"\$\(([A-Za-z_][A-Za-z0-9_]*)\)"))
                        Assert.True(podFields.Contains(m.Groups[1].Value), $"{name}: {key} refers to $({m.Groups[1].Value}), which is not defined before it");
                }
            }
            foreach (var key in env.Keys.Where(k => !podFields.Contains(k))) Assert.True(Known.ContainsKey(key), $"{name}: {key} is not a setting Loom reads");
            foreach (var field in podFields)
                Assert.True(env.Values.Any(v => v?.Contains($"$({field})", StringComparison.Ordinal) == true), $"{name}: the pod field {field} is used by no setting");

            var roles = env.GetValueOrDefault("Loom__Roles")?.Split(',', StringSplitOptions.TrimEntries) ?? [];
            Assert.NotEmpty(roles);
            Assert.All(roles, r => Assert.Contains(r, new[] { "web", "api", "jobs", "inference" }));
            rolesSeen.UnionWith(roles);
            var required = new List<string> { "ConnectionStrings__Loom", "Loom__Roles", "ASPNETCORE_URLS", "Loom__Telemetry__ScrapeToken" };
            // Every role reads and writes blobs: one shared store.
            required.Add("Loom__Blobs__Root");
            // Inference nodes register with the address API nodes reach them at; both sides carry the same token.
            if (roles.Contains("inference")) required.AddRange(["Inference__ModelDirectory", "Cluster__InternalUrl", "Cluster__AdvertisedUrl", "Cluster__InternalToken"]);
            else if (roles.Contains("api") || roles.Contains("web")) required.Add("Cluster__InternalToken");
            if (roles.Contains("api") && Int(spec, "replicas") > 1) required.Add("Api__RateLimits__Redis"); // one budget across replicas
            foreach (var key in required) Assert.True(env.ContainsKey(key), $"{name} (roles {string.Join(",", roles)}) does not set {key}");

            // Volumes: the blob root and every model folder lie under a mount of an existing claim.
            var podSpec = Map(Map(spec, "template"), "spec");
            var claims = List(podSpec, "volumes").Select(v => v.As())
                .ToDictionary(v => Str(v, "name"), v => Str(Map(v, "persistentVolumeClaim"), "claimName"));
            var mounts = List(container, "volumeMounts").Select(m => m.As()).Select(m => (Path: Str(m, "mountPath").TrimEnd('/') + "/", Volume: Str(m, "name"))).ToList();
            string ClaimOf(string path)
            {
                var mount = mounts.Where(m => (path.TrimEnd('/') + "/").StartsWith(m.Path, StringComparison.Ordinal)).OrderByDescending(m => m.Path.Length).FirstOrDefault();
                Assert.True(mount.Volume is not null, $"{name}: nothing is mounted where {path} lies");
                Assert.True(claims.TryGetValue(mount.Volume, out var claim), $"{name}: the volume {mount.Volume} is not declared");
                Named("PersistentVolumeClaim", claim);
                return claim;
            }
            blobClaims.Add(ClaimOf(env["Loom__Blobs__Root"]!));
            var modelDirectories = env.Where(kv => kv.Key is "Inference__ModelDirectory" || kv.Key.EndsWith("__Directory", StringComparison.Ordinal)).Select(kv => kv.Value!).ToList();
            foreach (var dir in modelDirectories) modelMounts[dir] = ClaimOf(dir);
            if (!roles.Contains("inference") && roles.Contains("api")) apiClaimOf.Add((name, ClaimOf));

            // Ports and probes.
            var containerPorts = List(container, "ports").Select(p => Int(p.As(), "containerPort")).ToList();
            Assert.Contains(containerPorts, p => p == port);
            if (env.TryGetValue("Cluster__InternalUrl", out var internalUrl))
            {
                var rpcPort = new Uri(internalUrl!.Replace("0.0.0.0", "localhost")).Port;
                Assert.NotEqual(port, rpcPort); // the RPC has an HTTP/2 endpoint of its own
                Assert.Contains(rpcPort, containerPorts);
                Assert.Equal(rpcPort, new Uri(env["Cluster__AdvertisedUrl"]!.Replace("$(POD_IP)", "10.0.0.1")).Port);
            }
            Assert.Equal(("/healthz", port), Probe(container, "livenessProbe"));
            Assert.Equal(("/readyz", port), Probe(container, "readinessProbe"));

            // A disruption budget keeps one pod of every group.
            var budget = docs.Where(x => Str(x, "kind") == "PodDisruptionBudget")
                .SingleOrDefault(b => Subset(Labels(Map(Map(b, "spec"), "selector"), "matchLabels"), podLabels));
            Assert.True(budget is not null, $"{name}: no PodDisruptionBudget selects its pods");
            Assert.True(Int(Map(budget, "spec"), "minAvailable") >= 1);
        }
        Assert.Equal(new HashSet<string> { "web", "api", "jobs", "inference" }, rolesSeen); // every role runs somewhere
        Assert.Single(tokens); // API and inference nodes read the same secret
        Assert.Single(blobClaims); // one blob store for all roles
        // API nodes read tokenizers from the folders inference nodes serve (base_models.Path): the same claim, the same path.
        Assert.NotEmpty(modelMounts);
        Assert.NotEmpty(apiClaimOf);
        foreach (var (api, claimOf) in apiClaimOf)
            foreach (var (dir, claim) in modelMounts)
                Assert.True(claimOf(dir) == claim, $"{api} does not see {dir} from the claim inference nodes read it from ({claim})");

        // Services reach pods that exist, on the port Loom listens on.
        foreach (var s in docs.Where(d => Str(d, "kind") == "Service"))
        {
            var spec = Map(s, "spec");
            var selector = Labels(spec, "selector");
            Assert.Contains(deployments, d => Subset(selector, Labels(Map(Map(Map(d, "spec"), "template"), "metadata"), "labels")));
            Assert.All(List(spec, "ports"), p => Assert.Equal(port, Int(p.As(), "targetPort")));
        }
        // The API and portal are reached through a Service over the pods with the web and api roles.
        Assert.Contains(docs, d => Str(d, "kind") == "Service" && deployments.Any(p =>
            Subset(Labels(Map(d, "spec"), "selector"), Labels(Map(Map(Map(p, "spec"), "template"), "metadata"), "labels"))
            && Map(Map(Map(p, "spec"), "template"), "spec") is var pod
            && List(pod, "containers").Any(c => List(c.As(), "env").Any(e => Str(e.As(), "name") == "Loom__Roles" && Str(e.As(), "value").Contains("web") && Str(e.As(), "value").Contains("api")))));
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
