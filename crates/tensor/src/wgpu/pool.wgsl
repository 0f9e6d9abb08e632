// Max and average pooling with their backward passes (gather form: one thread per input
// element sums over the windows that contain it; no atomics, deterministic order).
//
// Parameters: p[0] planes (N*C), p[1] H, p[2] W, p[3] oh, p[4] ow, p[5] kh, p[6] kw,
// p[7] stride h, p[8] stride w, p[9] pad h, p[10] pad w.

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

// Window of output (oy, ox), clipped to the image: (ya, yb, xa, xb).
fn window(oy: u32, ox: u32) -> vec4<u32> {
    let y0 = i32(oy * p[7]) - i32(p[9]);
    let x0 = i32(ox * p[8]) - i32(p[10]);
    let y1 = min(y0 + i32(p[5]), i32(p[1]));
    let x1 = min(x0 + i32(p[6]), i32(p[2]));
    return vec4<u32>(u32(max(y0, 0)), u32(y1), u32(max(x0, 0)), u32(x1));
}

// First arg-max (row-major scan, strict >) of window (oy, ox) in plane `base`.
fn argmax(base: u32, oy: u32, ox: u32) -> u32 {
    let w = window(oy, ox);
    let W = p[2];
    var best = w.x * W + w.z;
    for (var yy = w.x; yy < w.y; yy++) {
        for (var xx = w.z; xx < w.w; xx++) {
            let i = yy * W + xx;
            if x[base + i] > x[base + best] { best = i; }
        }
    }
    return best;
}

// Output rows whose window contains input row `y` (half-open range).
fn covering(y: u32, k: u32, s: u32, pad: u32, o: u32) -> vec2<u32> {
    let hi = (y + pad) / s + 1u; // last window starting at or before y, plus one
    let t = i32(y + pad) - i32(k) + 1;
    var lo = 0u;
    if t > 0 { lo = (u32(t) + s - 1u) / s; }
    return vec2<u32>(lo, min(hi, o));
}

@compute @workgroup_size(256)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    let ohw = p[3] * p[4];
    if i >= p[0] * ohw { return; }
    let plane = i / ohw;
    let t = i % ohw;
    let base = plane * p[1] * p[2];
    out[i] = x[base + argmax(base, t / p[4], t % p[4])];
}

@compute @workgroup_size(256)
fn max_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    let hw = p[1] * p[2];
    if i >= p[0] * hw { return; }
    let plane = i / hw;
    let pos = i % hw;
    let yy = pos / p[2];
    let xx = pos % p[2];
    let base = plane * hw;
    let ry = covering(yy, p[5], p[7], p[9], p[3]);
    let rx = covering(xx, p[6], p[8], p[10], p[4]);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        for (var ox = rx.x; ox < rx.y; ox++) {
            if argmax(base, oy, ox) == pos {
                acc += dy[plane * p[3] * p[4] + oy * p[4] + ox];
            }
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(256)
fn avg_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    let ohw = p[3] * p[4];
    if i >= p[0] * ohw { return; }
    let plane = i / ohw;
    let t = i % ohw;
    let base = plane * p[1] * p[2];
    let w = window(t / p[4], t % p[4]);
    var s = 0.0;
    for (var yy = w.x; yy < w.y; yy++) {
        for (var xx = w.z; xx < w.w; xx++) {
            s += x[base + yy * p[2] + xx];
        }
    }
    out[i] = s * (1.0 / f32(p[5] * p[6]));
}

@compute @workgroup_size(256)
fn avg_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    let hw = p[1] * p[2];
    if i >= p[0] * hw { return; }
    let plane = i / hw;
    let pos = i % hw;
    let ry = covering(pos / p[2], p[5], p[7], p[9], p[3]);
    let rx = covering(pos % p[2], p[6], p[8], p[10], p[4]);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        for (var ox = rx.x; ox < rx.y; ox++) {
            acc += dy[plane * p[3] * p[4] + oy * p[4] + ox];
        }
    }
    out[i] = acc * (1.0 / f32(p[5] * p[6]));
}
