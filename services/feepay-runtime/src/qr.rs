//! QR codes as PNG images, for the lookup link on emails and receipt pages.
//!
//! The `qrcode` crate encodes; two parts are written here for a measured reason (they were
//! most of the notifier's CPU per email): the mask is scored by the crate's own penalty
//! rules over a plain grid ([`modules`]), and the PNG is one bit per pixel with fast
//! deflate. A test keeps the modules equal to `qrcode`'s own.

/// Pixels per module.
const SCALE: usize = 6;
/// Quiet zone around the code, in modules.
const QUIET: usize = 4;

/// A QR code of `text` as a PNG image (black on white, quiet zone of 4 modules).
///
/// One bit per pixel and fast deflate: every email carries one, and an 8-bit image with the
/// default compression made the QR code most of the notifier's CPU time per email.
pub fn qr_png(text: &str) -> Vec<u8> {
    let Some((width, dark)) = modules(text) else {
        return Vec::new();
    };
    let size = (width + 2 * QUIET) * SCALE;
    let row_bytes = size.div_ceil(8);
    // 1 = white, 0 = black; start all white and clear the dark modules' bits.
    let mut row = vec![0xffu8; row_bytes];
    let mut pixels = Vec::with_capacity(row_bytes * size);
    let blank = row.clone();
    for _ in 0..QUIET * SCALE {
        pixels.extend_from_slice(&blank);
    }
    for y in 0..width {
        row.copy_from_slice(&blank);
        for x in 0..width {
            if dark[y * width + x] {
                for px in (x + QUIET) * SCALE..(x + QUIET + 1) * SCALE {
                    row[px / 8] &= !(0x80 >> (px % 8));
                }
            }
        }
        for _ in 0..SCALE {
            pixels.extend_from_slice(&row);
        }
    }
    for _ in 0..QUIET * SCALE {
        pixels.extend_from_slice(&blank);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        enc.set_compression(png::Compression::Fast);
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&pixels);
        }
    }
    out
}

/// The modules of `text`'s QR code (error correction level M, smallest version), row by
/// row, `true` for dark: what `qrcode::QrCode::new` gives, with the mask chosen by the same
/// penalty rules computed over a plain grid. The crate's own scoring boxes a closure per
/// module and was most of the cost of an email.
fn modules(text: &str) -> Option<(usize, Vec<bool>)> {
    use qrcode::canvas::{Canvas, MaskPattern};
    let ec_level = qrcode::EcLevel::M;
    let bits = qrcode::bits::encode_auto(text.as_bytes(), ec_level).ok()?;
    let version = bits.version();
    let (data, ec) = qrcode::ec::construct_codewords(&bits.into_bytes(), version, ec_level).ok()?;
    let mut canvas = Canvas::new(version, ec_level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let width = version.width() as usize;
    [
        MaskPattern::Checkerboard,
        MaskPattern::HorizontalLines,
        MaskPattern::VerticalLines,
        MaskPattern::DiagonalLines,
        MaskPattern::LargeCheckerboard,
        MaskPattern::Fields,
        MaskPattern::Diamonds,
        MaskPattern::Meadow,
    ]
    .into_iter()
    .map(|pattern| {
        let mut c = canvas.clone();
        c.apply_mask(pattern);
        let dark: Vec<bool> = c.into_colors().into_iter().map(|m| m == qrcode::Color::Dark).collect();
        (penalty(width, &dark), dark)
    })
    // The first of equal scores, as the crate does.
    .min_by_key(|(score, _)| *score)
    .map(|(_, dark)| (width, dark))
}

/// Penalty of a masked symbol (ISO/IEC 18004 §7.8.3, as the `qrcode` crate scores it).
fn penalty(width: usize, dark: &[bool]) -> u32 {
    // Columns become rows of a transposed copy, so every scan runs over a slice.
    let mut columns = vec![false; dark.len()];
    for (y, row) in dark.chunks_exact(width).enumerate() {
        for (x, d) in row.iter().enumerate() {
            columns[x * width + y] = *d;
        }
    }
    let mut score: u32 = dark.chunks_exact(width).chain(columns.chunks_exact(width)).map(line_penalty).sum();
    // 2×2 blocks of one colour.
    for (a, b) in dark.chunks_exact(width).zip(dark.chunks_exact(width).skip(1)) {
        for x in 0..width - 1 {
            let c = a[x];
            if a[x + 1] == c && b[x] == c && b[x + 1] == c {
                score += 3;
            }
        }
    }
    // Balance of dark and light.
    let ratio = dark.iter().filter(|d| **d).count() * 200 / dark.len();
    score + ratio.abs_diff(100) as u32
}

/// Runs and finder-like patterns along one row or column.
fn line_penalty(line: &[bool]) -> u32 {
    const FINDER: [bool; 7] = [true, false, true, true, true, false, true];
    let n = line.len();
    let mut score = 0;
    // Runs of five or more modules of one colour: 3 + (run - 5).
    let mut run = 1;
    for j in 1..=n {
        if j < n && line[j] == line[j - 1] {
            run += 1;
        } else {
            if run >= 5 {
                score += run - 2;
            }
            run = 1;
        }
    }
    // 1:1:3:1:1 patterns without four light modules on both sides (outside is light).
    for j in 0..n.saturating_sub(6) {
        if line[j..j + 7] != FINDER {
            continue;
        }
        let before = &line[j.saturating_sub(4)..j];
        let after = &line[(j + 7).min(n)..(j + 11).min(n)];
        if !before.contains(&true) || !after.contains(&true) {
            score += 40;
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the PNG back and compares every pixel with the code's modules.
    #[test]
    fn the_image_holds_the_code_module_for_module() {
        let text = "https://tracuu.example.gov.vn/tra-cuu/ABCD2345EFGH6789JKMN";
        let png_bytes = qr_png(text);
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Grayscale, png::BitDepth::One));
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let width = code.width();
        let size = (width + 2 * QUIET) * SCALE;
        assert_eq!((info.width as usize, info.height as usize), (size, size));
        let colors = code.to_colors();
        let dark = |px: usize, py: usize| buf[py * info.line_size + px / 8] & (0x80 >> (px % 8)) == 0;
        for py in 0..size {
            for px in 0..size {
                let (mx, my) = (px / SCALE, py / SCALE);
                let expected = (QUIET..QUIET + width).contains(&mx)
                    && (QUIET..QUIET + width).contains(&my)
                    && colors[(my - QUIET) * width + (mx - QUIET)] == qrcode::Color::Dark;
                assert_eq!(dark(px, py), expected, "pixel ({px}, {py})");
            }
        }
    }

    /// The mask chosen over the plain grid is the one the crate chooses, for every size of
    /// code the lookup links use and more.
    #[test]
    fn the_modules_are_those_of_the_qrcode_crate() {
        for n in 0..200 {
            let text = format!("https://tracuu.{}.gov.vn/tra-cuu/{}", "x".repeat(n % 40), n * 7919);
            let (width, dark) = modules(&text).unwrap();
            let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
            assert_eq!(width, code.width(), "{text}");
            let expected: Vec<bool> = code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect();
            assert!(dark == expected, "{text}: another mask than the crate's");
        }
    }
}
