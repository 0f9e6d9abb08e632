// Unfold (im2col) and fold (col2im) for convolutions; the products themselves run on the
// strided GEMM of matmul.wgsl.
//
// Parameters: p[0] examples in this launch, p[1] C, p[2] H, p[3] W, p[4] kh, p[5] kw,
// p[6] oh, p[7] ow, p[8] stride h, p[9] stride w, p[10] pad h, p[11] pad w,
// p[12] dilation h, p[13] dilation w, p[14] source offset, p[15] destination offset.

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// cols[n, (c, ki, kj), (oy, ox)] = x[n, c, oy*sh - ph + ki*dh, ox*sw - pw + kj*dw] (0 outside).
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    let C = p[1]; let H = p[2]; let W = p[3]; let kh = p[4]; let kw = p[5];
    let oh = p[6]; let ow = p[7];
    let T = oh * ow;
    let D = C * kh * kw;
    if i >= p[0] * D * T { return; }
    let t = i % T;
    let d = (i / T) % D;
    let n = i / (T * D);
    let ox = t % ow; let oy = t / ow;
    let kj = d % kw; let ki = (d / kw) % kh; let c = d / (kw * kh);
    let y = i32(oy * p[8] + ki * p[12]) - i32(p[10]);
    let x = i32(ox * p[9] + kj * p[13]) - i32(p[11]);
    var v = 0.0;
    if y >= 0 && y < i32(H) && x >= 0 && x < i32(W) {
        v = src[p[14] + ((n * C + c) * H + u32(y)) * W + u32(x)];
    }
    dst[p[15] + i] = v;
}

// x[n, c, y, x] = sum of the columns that read it (the adjoint of im2col); a gather, so no
// atomics and a deterministic summation order.
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    let C = p[1]; let H = p[2]; let W = p[3]; let kh = p[4]; let kw = p[5];
    let oh = p[6]; let ow = p[7];
    let T = oh * ow;
    let D = C * kh * kw;
    if i >= p[0] * C * H * W { return; }
    let xx = i % W;
    let yy = (i / W) % H;
    let c = (i / (W * H)) % C;
    let n = i / (W * H * C);
    var acc = 0.0;
    for (var ki = 0u; ki < kh; ki++) {
        let ty = i32(yy + p[10]) - i32(ki * p[12]);
        if ty < 0 || (u32(ty) % p[8]) != 0u { continue; }
        let oy = u32(ty) / p[8];
        if oy >= oh { continue; }
        for (var kj = 0u; kj < kw; kj++) {
            let tx = i32(xx + p[11]) - i32(kj * p[13]);
            if tx < 0 || (u32(tx) % p[9]) != 0u { continue; }
            let ox = u32(tx) / p[9];
            if ox >= ow { continue; }
            let d = (c * kh + ki) * kw + kj;
            acc += src[p[14] + (n * D + d) * T + oy * ow + ox];
        }
    }
    dst[p[15] + i] = acc;
}
