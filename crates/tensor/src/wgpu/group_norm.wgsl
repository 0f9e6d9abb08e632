// Group normalisation: forward (y, xhat, rstd), input gradient and per-example affine
// gradients. One workgroup per (example, group) or per (example, channel); statistics are
// reduced in shared memory with a fixed tree, so results are deterministic.
//
// Parameters: p[0] N, p[1] C, p[2] spatial, p[3] groups, p[4] eps bits, p[5] has gamma,
// p[6] has beta.

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out1: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;

var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

fn reduce2(lid: u32) {
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if lid < s {
            s1[lid] += s1[lid + s];
            s2[lid] += s2[lid + s];
        }
        workgroupBarrier();
    }
}

// in0 = x, in2 = gamma, in3 = beta; out0 = y, out1 = xhat, out2 = rstd.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let ng = wid.y * nwg.x + wid.x;
    let groups = p[3];
    let live = ng < p[0] * groups;
    let cpg = p[1] / groups;
    let sp = p[2];
    let gl = cpg * sp;
    let base = ng * gl;
    // Pass 1: mean.
    var acc = 0.0;
    if live { for (var i = lid; i < gl; i += 256u) { acc += in0[base + i]; } }
    s1[lid] = acc;
    s2[lid] = 0.0;
    reduce2(lid);
    let mean = s1[0] / f32(gl);
    workgroupBarrier();
    // Pass 2: variance around the mean (two-pass: robust for large offsets).
    var v = 0.0;
    if live { for (var i = lid; i < gl; i += 256u) { let d = in0[base + i] - mean; v += d * d; } }
    s1[lid] = v;
    s2[lid] = 0.0;
    reduce2(lid);
    let rs = 1.0 / sqrt(s1[0] / f32(gl) + bitcast<f32>(p[4]));
    if !live { return; }
    if lid == 0u { out2[ng] = rs; }
    let grp = ng % groups;
    for (var i = lid; i < gl; i += 256u) {
        let xh = (in0[base + i] - mean) * rs;
        out1[base + i] = xh;
        let ch = grp * cpg + i / max(sp, 1u);
        var y = xh;
        if p[5] != 0u { y = y * in2[ch]; }
        if p[6] != 0u { y = y + in3[ch]; }
        out0[base + i] = y;
    }
}

// in0 = dy, in1 = xhat, in2 = gamma, in3 = rstd; out0 = dx.
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma.
@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let ng = wid.y * nwg.x + wid.x;
    let groups = p[3];
    let live = ng < p[0] * groups;
    let cpg = p[1] / groups;
    let sp = p[2];
    let gl = cpg * sp;
    let base = ng * gl;
    let grp = ng % groups;
    var a = 0.0;
    var b = 0.0;
    if live {
        for (var i = lid; i < gl; i += 256u) {
            var d = in0[base + i];
            if p[5] != 0u { d = d * in2[grp * cpg + i / max(sp, 1u)]; }
            a += d;
            b += d * in1[base + i];
        }
    }
    s1[lid] = a;
    s2[lid] = b;
    reduce2(lid);
    let m1 = s1[0] / f32(gl);
    let m2 = s2[0] / f32(gl);
    if !live { return; }
    let r = in3[ng];
    for (var i = lid; i < gl; i += 256u) {
        var d = in0[base + i];
        if p[5] != 0u { d = d * in2[grp * cpg + i / max(sp, 1u)]; }
        out0[base + i] = r * (d - m1 - in1[base + i] * m2);
    }
}

// in0 = dy, in1 = xhat; out0 = dgamma [N, C], out1 = dbeta [N, C].
@compute @workgroup_size(256)
fn affine_grads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let nc = wid.y * nwg.x + wid.x;
    let live = nc < p[0] * p[1];
    let sp = p[2];
    let base = nc * sp;
    var a = 0.0;
    var b = 0.0;
    if live {
        for (var i = lid; i < sp; i += 256u) {
            let d = in0[base + i];
            a += d * in1[base + i];
            b += d;
        }
    }
    s1[lid] = a;
    s2[lid] = b;
    reduce2(lid);
    if live && lid == 0u {
        out0[nc] = s1[0];
        out1[nc] = s2[0];
    }
}
