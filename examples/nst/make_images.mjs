#!/usr/bin/env node
// Draws the style-transfer example's images (SVG rendered by sharp; a fixed seed, so the same
// bytes every run): three ready styles in styles/ and a content picture.
//   node examples/nst/make_images.mjs
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const here = dirname(fileURLToPath(import.meta.url));
const SIZE = 256;
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (palette) => palette[Math.floor(random() * palette.length)];

function mosaic() {
  const palette = ['#d1495b', '#edae49', '#00798c', '#30638e', '#003d5b', '#f4f1de'];
  const tiles = [];
  for (let y = 0; y < SIZE; y += 16) {
    for (let x = 0; x < SIZE; x += 16) {
      const j = () => Math.round((random() - 0.5) * 6);
      tiles.push(`<polygon points="${x + j()},${y + j()} ${x + 16 + j()},${y + j()} ${x + 16 + j()},${y + 16 + j()} ${x + j()},${y + 16 + j()}" fill="${pick(palette)}" stroke="#222" stroke-width="2"/>`);
    }
  }
  return tiles.join('');
}

function stripes() {
  const palette = ['#264653', '#2a9d8f', '#e9c46a', '#f4a261', '#e76f51'];
  const bands = [];
  for (let i = -SIZE; i < 2 * SIZE; i += 14) bands.push(`<line x1="${i}" y1="0" x2="${i + SIZE}" y2="${SIZE}" stroke="${pick(palette)}" stroke-width="10"/>`);
  return `<rect width="${SIZE}" height="${SIZE}" fill="#111"/>${bands.join('')}`;
}

function strokes() {
  const palette = ['#1d3557', '#457b9d', '#a8dadc', '#f1faee', '#e63946', '#ffb703'];
  const paths = [`<rect width="${SIZE}" height="${SIZE}" fill="#14213d"/>`];
  for (let i = 0; i < 140; i++) {
    const [x, y] = [random() * SIZE, random() * SIZE];
    const [dx, dy] = [(random() - 0.5) * 60, (random() - 0.5) * 60];
    paths.push(`<path d="M${x},${y} q${dx},${-dy} ${dx * 2},${dy / 2}" stroke="${pick(palette)}" stroke-width="${4 + random() * 6}" fill="none" stroke-linecap="round"/>`);
  }
  return paths.join('');
}

function house() {
  return `<rect width="${SIZE}" height="150" fill="#8ecae6"/><rect y="150" width="${SIZE}" height="106" fill="#6a994e"/>
<circle cx="205" cy="45" r="24" fill="#ffb703"/><path d="M0,150 Q60,90 130,150 T256,140 V150 Z" fill="#386641"/>
<rect x="70" y="110" width="110" height="90" fill="#bc4749"/><polygon points="60,112 125,60 190,112" fill="#582f0e"/>
<rect x="110" y="150" width="30" height="50" fill="#3d2b1f"/><rect x="82" y="125" width="22" height="20" fill="#f2e8cf"/>
<rect x="146" y="125" width="22" height="20" fill="#f2e8cf"/>`;
}

const render = (body, file) => sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${SIZE}" height="${SIZE}">${body}</svg>`))
  .flatten({ background: '#ffffff' }).png().toFile(join(here, file));

mkdirSync(join(here, 'styles'), { recursive: true });
await render(mosaic(), 'styles/style-mosaic.png');
await render(stripes(), 'styles/style-stripes.png');
await render(strokes(), 'styles/style-strokes.png');
await render(house(), 'content-house.png');
