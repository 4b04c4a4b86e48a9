using Loom.Inference.Model;

namespace Loom.Inference.Training;

/// <summary>The training loop as a state machine that runs in slices: each call runs units of work (a layer's forward
/// or backward of one row, the loss head, the optimizer step, a validation layer) until its budget is spent. Units run
/// the same computations in the same order however the run is sliced, so the result does not depend on how much
/// inference ran beside it. Budgets and costs are in layer-tokens (one token through one layer's forward).</summary>
internal sealed class LoraTrainer
{
    private enum Phase { Forward, Head, Backward, Optimizer, Validate }

    private readonly TrainingModel _model;
    private readonly LoraParameters _p;
    private readonly TrainingPlan _plan;
    private readonly TrainingHyperparameters _hp;
    private readonly IReadOnlyList<TrainingExample> _validation;
    private readonly int _layers;
    private readonly double _headCostPerToken;

    private Phase _phase = Phase.Forward;
    private int _step, _row, _layer;
    private bool _rowSet;
    private bool _chunked;               // the current row's forward pass goes chunk by chunk
    private int _rideRows;
    private double _stepLoss;
    private double _headLoss;            // loss of the current row's head blocks so far
    private int _valIndex;
    private double _valLoss;
    private long _valTokens;

    public LoraParameters Parameters => _p;
    public TrainingModel Model => _model;
    public TrainingPlan Plan => _plan;
    public int Step => _step;
    public int TotalSteps => _plan.Steps.Count;
    public bool Finished => _step >= _plan.Steps.Count && _phase != Phase.Validate;
    /// <summary>No step is partly computed (gradients are zero): a snapshot taken now is consistent.</summary>
    public bool AtStepBoundary => _phase == Phase.Forward && _row == 0 && !_rowSet;
    public long TrainedTokens { get; private set; }
    public long ComputedTokens { get; private set; }
    public double LastLoss { get; private set; } = double.NaN;
    public double? LastValidationLoss { get; private set; }
    public double LastLearningRate { get; private set; }
    public double LastGradientNorm { get; private set; }
    /// <summary>The most steps the run may complete: the optimizer update that would complete step
    /// <c>UpdateLimit + 1</c> waits (the forward and backward passes before it run). Checkpoint back-pressure sets it.</summary>
    public int UpdateLimit { get; set; } = int.MaxValue;
    /// <summary>The next unit is an optimizer update that <see cref="UpdateLimit"/> holds back.</summary>
    public bool HeldAtUpdate => _phase == Phase.Optimizer && _step >= UpdateLimit;

    public LoraTrainer(Transformer model, LoraParameters p, TrainingPlan plan, TrainingHyperparameters hp,
        IReadOnlyList<TrainingExample>? validation, int storedLayers, int rowTokens = 0)
    {
        _p = p;
        _plan = plan;
        _hp = hp;
        _validation = validation ?? [];
        _layers = model.Config.NumLayers;
        _model = new TrainingModel(model, p, rowTokens > 0 ? rowTokens : plan.MaxRowTokens, storedLayers);
        var c = model.Config;
        double layerParams = 2.0 * c.HiddenSize * c.QDim + 2.0 * c.HiddenSize * c.KvDim + 3.0 * c.HiddenSize * c.IntermediateSize;
        _headCostPerToken = 3.0 * c.VocabSize * c.HiddenSize / layerParams;
    }

    /// <summary>Continues from a snapshot's step (its weights and moments are already in the parameters).</summary>
    public void RestoreProgress(TrainingSnapshot s)
    {
        if (s.Step < 0 || s.Step > TotalSteps) throw new ArgumentException($"the snapshot is at step {s.Step}; this run has {TotalSteps} steps");
        var (epoch, cursor, rng) = CursorAt(s.Step);
        if (s.Epoch != epoch || s.Cursor != cursor || !s.RngState.AsSpan().SequenceEqual(rng))
            throw new ArgumentException("the snapshot's data cursor does not match this run's data order (different data or hyperparameters)");
        _step = s.Step;
        TrainedTokens = s.TrainedTokens;
        LastLoss = s.LastTrainLoss;
        LastValidationLoss = s.LastValidationLoss;
    }

    /// <summary>(epoch, first row of the next step in that epoch's order, data-order generator state at that epoch's start).</summary>
    public (int Epoch, int Cursor, ulong[] Rng) CursorAt(int step) =>
        step < _plan.Steps.Count
            ? (_plan.Steps[step].Epoch, _plan.Steps[step].FirstRow, _plan.EpochRngStates[_plan.Steps[step].Epoch])
            : (_hp.Epochs, 0, _plan.FinalRngState);

    /// <summary>Runs units until <paramref name="budget"/> is spent (at least one unit) or an optimizer step (with its
    /// validation, when due) completes. Returns true when a step completed.</summary>
    public bool Run(ref double budget)
    {
        while (!Finished)
        {
            switch (_phase)
            {
                case Phase.Forward:
                {
                    if (!_rowSet) StartRow();
                    if (_chunked)
                    {
                        // one chunk through every layer, on its own (no inference pass to ride along with)
                        var chunk = _model.NextChunk(RideRows);
                        chunk.Complete();
                        budget -= (double)chunk.Rows * _layers;
                        if (_model.ChunkedRows == _model.RowTokens) _phase = Phase.Head;
                        break;
                    }
                    _model.ForwardLayer(_layer++);
                    budget -= _model.RowTokens;
                    if (_layer == _layers) _phase = Phase.Head;
                    break;
                }
                case Phase.Head:
                {
                    // one block of trained positions per unit (the LM head is the largest product of a step)
                    var sp = _plan.Steps[_step];
                    bool done = _model.HeadBlock(1f / sp.TrainedTokens, backward: true, ref _headLoss, out int positions);
                    budget -= _headCostPerToken * Math.Max(positions, 1);
                    if (!done) break;
                    _stepLoss += _headLoss;
                    _headLoss = 0;
                    _phase = Phase.Backward;
                    _layer = _layers - 1;
                    break;
                }
                case Phase.Backward:
                {
                    bool recompute = _model.Recomputes(_layer);
                    _model.BackwardLayer(_layer--);
                    budget -= (recompute ? 3 : 2) * _model.RowTokens;
                    if (_layer >= 0) break;
                    ComputedTokens += _model.RowTokens;
                    _rowSet = false;
                    _phase = ++_row == _plan.Steps[_step].Rows.Length ? Phase.Optimizer : Phase.Forward;
                    break;
                }
                case Phase.Optimizer:
                {
                    if (_step >= UpdateLimit) return false;
                    var sp = _plan.Steps[_step];
                    LastLearningRate = LearningRate.At(_hp, _step, TotalSteps);
                    LastGradientNorm = AdamW.Step(_p, _hp, _step + 1, LastLearningRate);
                    _p.ZeroGradients();
                    LastLoss = _stepLoss / sp.TrainedTokens;
                    TrainedTokens += sp.TrainedTokens;
                    _stepLoss = 0;
                    _row = 0;
                    _step++;
                    bool due = _validation.Count > 0 && (_step == TotalSteps || (_hp.ValidationEvery > 0 && _step % _hp.ValidationEvery == 0));
                    if (!due)
                    {
                        _phase = Phase.Forward;
                        return true;
                    }
                    _phase = Phase.Validate;
                    _valIndex = 0;
                    _valLoss = 0;
                    _valTokens = 0;
                    break;
                }
                case Phase.Validate:
                {
                    if (ValidationUnit(ref budget))
                    {
                        _phase = Phase.Forward;
                        return true;
                    }
                    break;
                }
            }
            if (budget <= 0) return false;
        }
        return false;
    }

    /// <summary>Sets the step's next row. Its forward pass goes chunk by chunk (every layer for <see cref="RideRows"/>
    /// rows, then the next) when chunks are asked for, layer by layer otherwise: bitwise the same activations.</summary>
    private void StartRow()
    {
        _model.SetRow(_plan.Steps[_step].Rows[_row]);
        _model.Embed();
        _rowSet = true;
        _layer = 0;
        _chunked = RideRows > 0;
        if (_chunked) _model.BeginChunks();
    }

    /// <summary>The next chunk of the forward pass to ride along with an inference pass, or null when the trainer is
    /// not in a chunked forward pass (another phase, chunks not asked for, or a row going layer by layer). Hand it back
    /// with <see cref="Land"/> after the pass.</summary>
    public ChunkRide? Board()
    {
        if (RideRows <= 0 || Finished || _phase != Phase.Forward) return null;
        if (!_rowSet) StartRow();
        return _chunked ? _model.NextChunk(RideRows) : null;
    }

    /// <summary>The next unit is a chunk of a chunked forward pass (or the start of a row that will go chunk by chunk).</summary>
    public bool WantsRide => RideRows > 0 && !Finished && _phase == Phase.Forward && (!_rowSet || _chunked);

    /// <summary>Completes a chunk after the inference pass it rode along with (whatever the pass did not carry runs now,
    /// and the whole chunk again from its first layer when the pass failed part-way: <paramref name="spoiled"/>).
    /// Returns the work done, in layer-tokens.</summary>
    public double Land(ChunkRide ride, bool spoiled)
    {
        if (spoiled) ride.Restart();
        ride.Complete();
        if (_model.ChunkedRows == _model.RowTokens) _phase = Phase.Head;
        return (double)ride.Rows * _layers;
    }

    /// <summary>Rows of a chunk when the forward pass goes chunk by chunk (a multiple of 8; 0: layer by layer).</summary>
    public int RideRows
    {
        get => _rideRows;
        set => _rideRows = value >= 0 && value % 8 == 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), "chunks are whole 8-row tiles");
    }

    /// <summary>One layer of the validation forward pass; true when the whole validation set is done.</summary>
    private bool ValidationUnit(ref double budget)
    {
        var ex = _validation[_valIndex];
        if (!_rowSet)
        {
            _model.SetRow([ex]);
            _model.Embed();
            _rowSet = true;
            _layer = 0;
        }
        if (_layer < _layers)
        {
            _model.ForwardLayer(_layer++);
            budget -= _model.RowTokens;
            return false;
        }
        _valLoss += _model.Head(0, backward: false);
        _valTokens += ex.TrainedTokens;
        budget -= _headCostPerToken * _model.RowTokens / 3;
        _rowSet = false;
        if (++_valIndex < _validation.Count) return false;
        LastValidationLoss = _valLoss / _valTokens;
        return true;
    }

    /// <summary>A snapshot with its own copies of the tensors in PEFT's layout.</summary>
    public TrainingSnapshot Snapshot(string fingerprint, TimeSpan elapsed) => NewSnapshot(fingerprint, elapsed, _p.ExportStates());

    /// <summary>A checkpoint's snapshot: the tensors are copied into <paramref name="staging"/> as they are (no allocation,
    /// no transposes); the snapshot turns them into PEFT's layout when it is first read.</summary>
    public TrainingSnapshot Snapshot(string fingerprint, TimeSpan elapsed, SnapshotStaging staging)
    {
        var s = NewSnapshot(fingerprint, elapsed, null);
        return s.OverStaging(staging, staging.CopyFrom(_p));
    }

    private TrainingSnapshot NewSnapshot(string fingerprint, TimeSpan elapsed, IReadOnlyList<LoraModuleState>? modules)
    {
        if (!AtStepBoundary) throw new InvalidOperationException("a snapshot is taken between optimizer steps");
        var (epoch, cursor, rng) = CursorAt(_step);
        return new TrainingSnapshot
        {
            Fingerprint = fingerprint, Step = _step, Epoch = epoch, Cursor = cursor, RngState = rng, TrainedTokens = TrainedTokens,
            LastTrainLoss = LastLoss, LastValidationLoss = LastValidationLoss, Elapsed = elapsed, Rank = _p.Rank, Alpha = _p.Alpha,
            Modules = modules!, // null: the staging buffers hold them (OverStaging)
        };
    }
}
