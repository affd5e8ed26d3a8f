-- Demo data for MedSpa Agent: two clinics (Glow MedSpa, San Francisco; Harbor Aesthetics, New York).
--
-- Generated file; the Glow MedSpa knowledge-base text is the same as kb/glow-medspa/*.md
-- (document body = the Markdown after its first "# Title" line; chunks = paragraph groups of at most ~900 chars).
--
-- Load as the database owner (or a superuser):  psql -v ON_ERROR_STOP=1 -f seed_data.sql
-- Idempotent: every insert is keyed on a natural unique key (slug, phone, source_key, ...), so loading it again
-- adds nothing. Clients, consent events and appointments are never overwritten by a re-load; catalogue rows
-- (providers, services, automations, knowledge base) are refreshed only where the seed text changed.
-- Row-level security is FORCEd on clinic-owned tables, so each clinic's rows are written in their own
-- transaction with the transaction-local setting app.clinic_id. Appointment times are relative to now(),
-- so upcoming appointments stay upcoming whenever the file is loaded.

-- ================================================================== tenant directory (no RLS)
BEGIN;

INSERT INTO clinics (id, slug, name, timezone, public_key, phone, oncall_phone, address, business_hours, holidays, policies, chat_origins)
VALUES (1, 'glow-medspa', 'Glow MedSpa', 'America/Los_Angeles', 'glow-medspa-public', '+14155550100', '+14155550199', '2150 Fillmore Street, Suite 200, San Francisco, CA 94115', '{"mon": [["09:00", "19:00"]], "tue": [["09:00", "19:00"]], "wed": [["09:00", "19:00"]], "thu": [["09:00", "19:00"]], "fri": [["09:00", "19:00"]], "sat": [["09:00", "15:00"]], "sun": []}'::jsonb, '["2026-11-26", "2026-12-25", "2027-01-01"]'::jsonb, '{"cancellation_window_hours": 24, "late_cancel_fee_cents": 5000, "deposit_policy": "Deposits are applied to your treatment. Cancel 24+ hours ahead for a full refund; inside 24 hours the deposit is kept.", "deposit_refund_outside_window": true, "deposit_hold_minutes": 60, "quiet_hours": {"start": "08:00", "end": "21:00"}, "marketing_cap_per_week": 2, "opt_out_footer": "Reply STOP to opt out.", "min_lead_minutes": 120, "payment_methods": "Visa, Mastercard, American Express, Discover, Apple Pay, Google Pay, cash, Glow MedSpa gift cards, HSA/FSA cards for eligible services, and Cherry financing. No personal checks.", "parking": "Metered street parking on Fillmore Street (2-hour limit). The Sutter Street public garage is a 5-minute walk south; we validate 2 hours. The 22 Fillmore bus stops half a block away.", "review_url": "https://glowmedspa.example/review"}'::jsonb, '["http://127.0.0.1:8000", "http://localhost:8000"]'::jsonb)
ON CONFLICT DO NOTHING;

INSERT INTO clinics (id, slug, name, timezone, public_key, phone, oncall_phone, address, business_hours, holidays, policies, chat_origins)
VALUES (2, 'harbor-aesthetics', 'Harbor Aesthetics', 'America/New_York', 'harbor-aesthetics-public', '+12125550100', '+12125550199', '410 West 14th Street, 3rd Floor, New York, NY 10014', '{"mon": [["10:00", "18:00"]], "tue": [["10:00", "18:00"]], "wed": [["10:00", "18:00"]], "thu": [["10:00", "18:00"]], "fri": [["10:00", "18:00"]], "sat": [["10:00", "16:00"]], "sun": []}'::jsonb, '["2026-11-26", "2026-12-25", "2027-01-01"]'::jsonb, '{"cancellation_window_hours": 48, "late_cancel_fee_cents": 7500, "deposit_policy": "A deposit holds your appointment and is applied to your treatment. Cancel 48+ hours ahead for a full refund; inside 48 hours the deposit is kept.", "deposit_refund_outside_window": true, "deposit_hold_minutes": 30, "quiet_hours": {"start": "09:00", "end": "20:00"}, "marketing_cap_per_week": 1, "opt_out_footer": "Reply STOP to opt out.", "min_lead_minutes": 240, "payment_methods": "All major credit cards, Apple Pay and Google Pay. No cash.", "parking": "No on-site parking. Garages on West 13th and West 15th Streets; the A, C, E and L trains stop at 14th Street and 8th Avenue.", "review_url": "https://harboraesthetics.example/review"}'::jsonb, '[]'::jsonb)
ON CONFLICT DO NOTHING;

INSERT INTO clinic_phone_numbers (clinic_id, e164)
SELECT id, '+14155550123' FROM clinics WHERE slug = 'glow-medspa'
ON CONFLICT (e164) DO NOTHING;

INSERT INTO clinic_phone_numbers (clinic_id, e164)
SELECT id, '+12125550123' FROM clinics WHERE slug = 'harbor-aesthetics'
ON CONFLICT (e164) DO NOTHING;

-- Explicit clinic ids above: move the sequence past them.
SELECT setval(pg_get_serial_sequence('clinics', 'id'), GREATEST((SELECT max(id) FROM clinics), 2));
COMMIT;

-- ================================================================== Glow MedSpa (clinic 1)
BEGIN;
SELECT set_config('app.clinic_id', (SELECT id::text FROM clinics WHERE slug = 'glow-medspa'), true);

-- providers
INSERT INTO providers (clinic_id, slug, name, title, calendar_id, working_hours) VALUES
  (current_setting('app.clinic_id')::bigint, 'maya-chen', 'Dr. Maya Chen', 'MD, medical director', 'maya.chen@glowmedspa.example', '{"mon": [], "tue": [["10:00", "18:00"]], "wed": [["10:00", "18:00"]], "thu": [["10:00", "18:00"]], "fri": [["10:00", "18:00"]], "sat": [["09:00", "14:00"]], "sun": []}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'jordan-lee', 'Jordan Lee', 'RN, nurse injector', 'jordan.lee@glowmedspa.example', '{"mon": [["09:00", "17:00"]], "tue": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]], "thu": [["09:00", "17:00"]], "fri": [["11:00", "19:00"]], "sat": [["09:00", "15:00"]], "sun": []}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'sofia-ramirez', 'Sofia Ramirez', 'Licensed esthetician', 'sofia.ramirez@glowmedspa.example', '{"mon": [["09:00", "17:00"]], "tue": [], "wed": [["11:00", "19:00"]], "thu": [["11:00", "19:00"]], "fri": [["11:00", "19:00"]], "sat": [["09:00", "15:00"]], "sun": []}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'priya-nair', 'Priya Nair', 'Laser technician', 'priya.nair@glowmedspa.example', '{"mon": [["09:00", "13:00"], ["14:00", "17:00"]], "tue": [["09:00", "13:00"], ["14:00", "17:00"]], "wed": [["09:00", "13:00"], ["14:00", "17:00"]], "thu": [["09:00", "13:00"], ["14:00", "17:00"]], "fri": [], "sat": [], "sun": []}'::jsonb)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  name = EXCLUDED.name, title = EXCLUDED.title, calendar_id = EXCLUDED.calendar_id,
  working_hours = EXCLUDED.working_hours
WHERE (providers.name, providers.title, providers.calendar_id, providers.working_hours)
  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.title, EXCLUDED.calendar_id, EXCLUDED.working_hours);

-- services
INSERT INTO services (clinic_id, slug, name, category, description, duration_min, buffer_min, price_cents, price_note, deposit_cents, prep_instructions, rebook_interval_days, synonyms, contraindications) VALUES
  (current_setting('app.clinic_id')::bigint, 'neurotoxin', 'Botox / Dysport', 'neurotoxin', 'Wrinkle-relaxing injections for frown lines, forehead lines, crow''s feet, lip flip and jaw slimming. Priced per unit; a typical visit is about 25 units (around $350). Results show in 3-5 days, full effect at 2 weeks, lasting 3-4 months.', 30, 10, 1400, 'per unit', 5000, 'Avoid alcohol, fish oil, vitamin E, ibuprofen and aspirin for 24-48 hours before (unless prescribed). Come with a clean face.', 90, ARRAY['botox', 'tox', 'dysport', 'xeomin', 'wrinkle relaxer', 'neurotoxin', 'anti-wrinkle injections', 'frown lines', 'forehead lines', 'crow''s feet', 'lip flip', 'masseter', 'baby botox']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "blood_thinners", "position": "Blood thinners (like warfarin or a daily aspirin) raise the chance of bruising, and you should never stop a prescribed medicine on your own. Please start with a free consultation so a provider can review your medications.", "suggest": ["consultation"]}, {"condition": "allergy", "position": "Because of that allergy, a provider needs to review your health history before any neurotoxin. Please start with a free consultation.", "suggest": ["consultation"], "ingredients": ["botox", "botulinum", "dysport", "xeomin", "albumin", "neurotoxin"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'lip-filler', 'Lip filler', 'dermal_filler', 'Hyaluronic acid filler to add volume, shape and hydration to the lips. $750 per syringe; a half-syringe option is $450. Lasts 6-12 months.', 45, 15, 75000, 'per syringe', 10000, 'Avoid alcohol and blood-thinning supplements for 24-48 hours before. No dental work 2 weeks before or after. Tell us if you get cold sores.', 270, ARRAY['lip filler', 'lips', 'lip injections', 'lip augmentation', 'juvederm', 'restylane kysse', 'fuller lips']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "cold_sore", "position": "With an active cold sore we''ll reschedule your treatment until it has healed. If you get cold sores often, tell us before lip filler or a peel; your doctor may suggest an antiviral beforehand."}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "blood_thinners", "position": "Blood thinners (like warfarin or a daily aspirin) raise the chance of bruising, and you should never stop a prescribed medicine on your own. Please start with a free consultation so a provider can review your medications.", "suggest": ["consultation"]}, {"condition": "allergy", "position": "Most fillers contain hyaluronic acid and lidocaine, so with that allergy a provider needs to review your health history first. Please start with a free consultation.", "suggest": ["consultation"], "ingredients": ["lidocaine", "hyaluronic acid", "hyaluronic", "filler", "juvederm", "restylane"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'cheek-filler', 'Cheek filler', 'dermal_filler', 'Hyaluronic acid filler to restore cheek volume and lift the midface. $800 per syringe; most patients need one or two syringes. Lasts 12-18 months.', 45, 15, 80000, 'per syringe', 10000, 'Avoid alcohol and blood-thinning supplements for 24-48 hours before. No dental work 2 weeks before or after.', 365, ARRAY['cheek filler', 'cheeks', 'voluma', 'midface filler', 'cheek augmentation', 'contour']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "blood_thinners", "position": "Blood thinners (like warfarin or a daily aspirin) raise the chance of bruising, and you should never stop a prescribed medicine on your own. Please start with a free consultation so a provider can review your medications.", "suggest": ["consultation"]}, {"condition": "allergy", "position": "Most fillers contain hyaluronic acid and lidocaine, so with that allergy a provider needs to review your health history first. Please start with a free consultation.", "suggest": ["consultation"], "ingredients": ["lidocaine", "hyaluronic acid", "hyaluronic", "filler", "juvederm", "restylane"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'hydrafacial', 'HydraFacial', 'facial', 'Deep cleanse, exfoliation, extractions and hydrating serums in one relaxing treatment with no downtime.', 60, 15, 22500, '', 0, 'Stop retinol and exfoliating acids 2 days before. Come with a clean face if possible.', 30, ARRAY['hydrafacial', 'hydra facial', 'hydro facial', 'facial', 'deep cleansing facial']::text[], '[{"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "age", "position": "We don''t offer treatments to patients under 16. From 16, a HydraFacial or a light chemical peel is available with written consent from a parent or guardian.", "min_age": 16}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'microneedling', 'Microneedling', 'skin', 'Collagen induction therapy for acne scars, texture, fine lines and pores. $400 per session or $1,080 for a prepaid series of three. Numbing cream included.', 75, 15, 40000, 'per session', 5000, 'Stop retinol and acids 5 days before. No sunburn or tan. Not within 6 months of Accutane. Arrive with a clean face; we apply numbing cream for about 20 minutes.', 42, ARRAY['microneedling', 'micro needling', 'collagen induction', 'skin pen', 'acne scars', 'skin needling']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "accutane", "position": "You need to be off Accutane (isotretinoin) for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.", "suggest": ["consultation"]}, {"condition": "allergy", "position": "Microneedling always starts with a lidocaine numbing cream, so with that allergy a provider needs to review your health history first. Please start with a free consultation.", "suggest": ["consultation"], "ingredients": ["lidocaine", "numbing cream", "numbing", "topical anesthetic"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'chemical-peel', 'Chemical peel', 'skin', 'Professional peel to brighten tone, fade dark spots and smooth texture. Light peels flake for a few days.', 45, 10, 18000, '', 0, 'Stop retinol and acids 5-7 days before. No waxing on the face for 1 week before. Not within 6 months of Accutane.', 30, ARRAY['peel', 'chemical peel', 'skin peel', 'vi peel', 'glycolic peel', 'face peel']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "cold_sore", "position": "With an active cold sore we''ll reschedule your treatment until it has healed. If you get cold sores often, tell us before lip filler or a peel; your doctor may suggest an antiviral beforehand."}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "accutane", "position": "You need to be off Accutane (isotretinoin) for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.", "suggest": ["consultation"]}, {"condition": "age", "position": "We don''t offer treatments to patients under 16. From 16, a HydraFacial or a light chemical peel is available with written consent from a parent or guardian.", "min_age": 16}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'laser-hair-small', 'Laser hair removal - small area', 'laser', 'Laser hair reduction for small areas such as upper lip, chin, underarms or bikini line. Most people need 6-8 sessions.', 20, 10, 15000, 'per session', 0, 'Shave the area 12-24 hours before. No waxing or plucking for 4 weeks and no tanning or self-tanner for 2 weeks before.', 35, ARRAY['laser hair removal', 'lhr', 'laser', 'upper lip', 'underarms', 'bikini', 'chin', 'hair removal']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "accutane", "position": "You need to be off Accutane (isotretinoin) for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.", "suggest": ["consultation"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'laser-hair-large', 'Laser hair removal - large area', 'laser', 'Laser hair reduction for large areas such as full legs, back or chest. Most people need 6-8 sessions.', 60, 10, 35000, 'per session', 5000, 'Shave the area 12-24 hours before. No waxing or plucking for 4 weeks and no tanning or self-tanner for 2 weeks before.', 49, ARRAY['laser hair removal', 'lhr', 'laser', 'legs', 'full legs', 'back', 'chest', 'hair removal']::text[], '[{"condition": "pregnancy", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "breastfeeding", "position": "We don''t offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine, and we''re happy to plan your treatments for after.", "suggest": ["hydrafacial", "consultation"]}, {"condition": "skin_lesion", "position": "If you have a cold sore, acne cyst, rash, open wound or any skin irritation in the treatment area, we''ll reschedule your treatment until it has healed."}, {"condition": "accutane", "position": "You need to be off Accutane (isotretinoin) for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.", "suggest": ["consultation"]}, {"condition": "age", "position": "Botox, Dysport, filler, microneedling and laser hair removal are for patients 18 and older. 16 and 17 year olds can have a HydraFacial or a light chemical peel with written consent from a parent or guardian.", "suggest": ["hydrafacial", "chemical-peel"], "min_age": 18}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'consultation', 'Consultation', 'consultation', 'Free 30-minute visit with a provider to discuss your goals and get a written treatment plan and quote.', 30, 10, 0, 'free', 0, 'Fill in the new-patient forms we text you and bring a photo ID.', NULL, ARRAY['consult', 'consultation', 'free consultation', 'skin consultation', 'new patient', 'assessment']::text[], '[]'::jsonb)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  name = EXCLUDED.name,
  category = EXCLUDED.category,
  description = EXCLUDED.description,
  duration_min = EXCLUDED.duration_min,
  buffer_min = EXCLUDED.buffer_min,
  price_cents = EXCLUDED.price_cents,
  price_note = EXCLUDED.price_note,
  deposit_cents = EXCLUDED.deposit_cents,
  prep_instructions = EXCLUDED.prep_instructions,
  rebook_interval_days = EXCLUDED.rebook_interval_days,
  synonyms = EXCLUDED.synonyms,
  contraindications = EXCLUDED.contraindications
WHERE (services.name, services.category, services.description, services.duration_min, services.buffer_min, services.price_cents, services.price_note, services.deposit_cents, services.prep_instructions, services.rebook_interval_days, services.synonyms, services.contraindications)
  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.description, EXCLUDED.duration_min, EXCLUDED.buffer_min, EXCLUDED.price_cents, EXCLUDED.price_note, EXCLUDED.deposit_cents, EXCLUDED.prep_instructions, EXCLUDED.rebook_interval_days, EXCLUDED.synonyms, EXCLUDED.contraindications);

-- who does what
INSERT INTO provider_services (clinic_id, provider_id, service_id)
SELECT current_setting('app.clinic_id')::bigint, p.id, s.id
FROM (VALUES
  ('maya-chen', 'neurotoxin'),
  ('maya-chen', 'lip-filler'),
  ('maya-chen', 'cheek-filler'),
  ('maya-chen', 'consultation'),
  ('jordan-lee', 'neurotoxin'),
  ('jordan-lee', 'lip-filler'),
  ('jordan-lee', 'cheek-filler'),
  ('jordan-lee', 'consultation'),
  ('sofia-ramirez', 'hydrafacial'),
  ('sofia-ramirez', 'microneedling'),
  ('sofia-ramirez', 'chemical-peel'),
  ('sofia-ramirez', 'laser-hair-small'),
  ('sofia-ramirez', 'laser-hair-large'),
  ('sofia-ramirez', 'consultation'),
  ('priya-nair', 'laser-hair-small'),
  ('priya-nair', 'laser-hair-large'),
  ('priya-nair', 'consultation')
) AS v(provider_slug, service_slug)
JOIN providers p ON p.clinic_id = current_setting('app.clinic_id')::bigint AND p.slug = v.provider_slug
JOIN services s ON s.clinic_id = current_setting('app.clinic_id')::bigint AND s.slug = v.service_slug
ON CONFLICT DO NOTHING;

-- clients (never updated on re-seed: consent and tags belong to the app once loaded)
INSERT INTO clients (clinic_id, phone_e164, name, email, timezone, consent_state, marketing_consent, tags, notes, created_at) VALUES
  (current_setting('app.clinic_id')::bigint, '+14155550141', 'Olivia Bennett', 'olivia.bennett@example.com', NULL, 'opted_in', 'granted', ARRAY['vip']::text[], 'Prefers Dr. Chen. Likes late-morning appointments.', now() - interval '400 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550142', 'Ava Patel', 'ava.patel@example.com', NULL, 'opted_in', 'granted', '{}'::text[], '', now() - interval '210 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550143', 'Mia Johnson', NULL, NULL, 'opted_in', 'none', '{}'::text[], 'Microneedling series for acne scarring.', now() - interval '120 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550144', 'Sophia Nguyen', 'sophia.nguyen@example.com', NULL, 'opted_in', 'granted', ARRAY['vip']::text[], 'Glow Club member.', now() - interval '365 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550145', 'Isabella Garcia', NULL, NULL, 'opted_in', 'granted', ARRAY['lapsed']::text[], '', now() - interval '300 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550146', 'Charlotte Kim', 'charlotte.kim@example.com', NULL, 'opted_in', 'granted', ARRAY['new']::text[], '', now() - interval '8 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550147', 'Amelia Robinson', NULL, NULL, 'opted_in', 'none', '{}'::text[], 'Laser package, 6 sessions, legs.', now() - interval '90 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550148', 'Harper Lewis', NULL, NULL, 'opted_out', 'granted', '{}'::text[], '', now() - interval '250 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550149', 'Evelyn Walker', 'evelyn.walker@example.com', NULL, 'opted_in', 'none', ARRAY['lapsed']::text[], '', now() - interval '330 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550150', 'Abigail Scott', NULL, NULL, 'opted_in', 'none', '{}'::text[], '', now() - interval '110 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550151', 'Emily Park', 'emily.park@example.com', NULL, 'opted_in', 'granted', ARRAY['new']::text[], '', now() - interval '6 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550152', 'Daniel Rivera', NULL, NULL, 'opted_in', 'none', '{}'::text[], '', now() - interval '40 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550153', 'Michael Foster', 'michael.foster@example.com', 'America/New_York', 'opted_in', 'granted', '{}'::text[], 'Splits time between San Francisco and New York.', now() - interval '35 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550154', 'Grace Hall', NULL, NULL, 'opted_out', 'none', '{}'::text[], '', now() - interval '90 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550155', 'Chloe Adams', NULL, NULL, 'unknown', 'none', ARRAY['new']::text[], 'Booked by phone; texting consent not yet given.', now() - interval '2 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550156', 'Lily Turner', 'lily.turner@example.com', NULL, 'opted_in', 'granted', ARRAY['vip']::text[], '', now() - interval '280 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550157', 'Zoe Campbell', NULL, NULL, 'opted_in', 'none', '{}'::text[], '', now() - interval '60 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550158', 'Nora Mitchell', 'nora.mitchell@example.com', NULL, 'opted_in', 'granted', ARRAY['lapsed']::text[], '', now() - interval '260 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550159', 'Hannah Wright', NULL, NULL, 'opted_in', 'none', '{}'::text[], '', now() - interval '100 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550160', 'Ethan Morales', NULL, NULL, 'opted_in', 'none', ARRAY['new']::text[], '', now() - interval '15 days')
ON CONFLICT (clinic_id, phone_e164) DO NOTHING;

-- consent ledger
INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, scope, source, wording, created_at)
SELECT current_setting('app.clinic_id')::bigint, c.id, c.phone_e164, v.kind, v.scope, 'seed', v.wording, c.created_at + v.after
FROM (VALUES
  ('+14155550141', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550142', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550143', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550144', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550145', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550146', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550147', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550148', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550148', 'opt_out', 'all', 'Client replied STOP to a reminder text.', interval '125 days'),
  ('+14155550149', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550150', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550151', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550152', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550153', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550154', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550154', 'opt_out', 'all', 'Client replied STOP to a reminder text.', interval '45 days'),
  ('+14155550156', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550157', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550158', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550159', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550160', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550141', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550142', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550144', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550145', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550146', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550148', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550151', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550153', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550156', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days'),
  ('+14155550158', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days')
) AS v(phone, kind, scope, wording, after)
JOIN clients c ON c.clinic_id = current_setting('app.clinic_id')::bigint AND c.phone_e164 = v.phone
  -- a marketing grant only where the client row was created with it (a re-seed never widens consent)
  AND (v.scope <> 'marketing' OR c.marketing_consent = 'granted')
WHERE NOT EXISTS (
  SELECT 1 FROM consent_events e
  WHERE e.clinic_id = current_setting('app.clinic_id')::bigint AND e.phone_e164 = v.phone AND e.kind = v.kind
    AND e.scope = v.scope AND e.source = 'seed'
);

-- appointments: past and upcoming, relative to now() in the clinic's time zone
INSERT INTO appointments (
  clinic_id, kind, client_id, provider_id, service_id, starts_at, ends_at, blocked_until, status, source_key,
  deposit_cents, amount_charged_cents, calendar_sync, patient_confirmed_at, cancelled_at, cancel_reason, notes, created_at)
SELECT current_setting('app.clinic_id')::bigint, 'appointment', cl.id, p.id, s.id, t.starts_at,
  t.starts_at + make_interval(mins => s.duration_min),
  t.starts_at + make_interval(mins => s.duration_min + s.buffer_min),
  v.status, v.source_key, 0,
  -- what a completed visit was charged (spend segments): a per-unit treatment is about 25 units
  CASE WHEN v.status = 'completed' THEN s.price_cents * CASE WHEN s.price_note = 'per unit' THEN 25 ELSE 1 END END,
  CASE WHEN v.n > 0 THEN 'pending' ELSE 'none' END,
  CASE WHEN v.status IN ('confirmed', 'completed') THEN t.starts_at - interval '20 hours' END,
  CASE WHEN v.status = 'cancelled' THEN t.starts_at - interval '2 days' END,
  CASE WHEN v.status = 'cancelled' THEN 'Patient cancelled by text: schedule conflict.' ELSE '' END,
  CASE WHEN v.status = 'no_show' THEN 'Patient did not arrive.' ELSE '' END,
  LEAST(now() - interval '1 day', t.starts_at - interval '7 days')
FROM (VALUES
  ('seed:appt:1', '+14155550141', 'maya-chen', 'neurotoxin', -185, time '11:00', 'completed'),
  ('seed:appt:2', '+14155550141', 'maya-chen', 'neurotoxin', -95, time '11:00', 'completed'),
  ('seed:appt:3', '+14155550142', 'jordan-lee', 'lip-filler', -170, time '12:00', 'completed'),
  ('seed:appt:4', '+14155550144', 'sofia-ramirez', 'hydrafacial', -150, time '11:00', 'completed'),
  ('seed:appt:5', '+14155550144', 'sofia-ramirez', 'hydrafacial', -120, time '11:00', 'completed'),
  ('seed:appt:6', '+14155550144', 'sofia-ramirez', 'hydrafacial', -60, time '11:00', 'completed'),
  ('seed:appt:7', '+14155550144', 'sofia-ramirez', 'hydrafacial', -30, time '11:00', 'completed'),
  ('seed:appt:8', '+14155550145', 'maya-chen', 'cheek-filler', -190, time '12:00', 'completed'),
  ('seed:appt:9', '+14155550149', 'jordan-lee', 'neurotoxin', -175, time '11:30', 'completed'),
  ('seed:appt:10', '+14155550158', 'priya-nair', 'laser-hair-small', -160, time '11:00', 'completed'),
  ('seed:appt:11', '+14155550147', 'priya-nair', 'laser-hair-large', -45, time '11:00', 'completed'),
  ('seed:appt:12', '+14155550147', 'priya-nair', 'laser-hair-large', -15, time '11:00', 'completed'),
  ('seed:appt:13', '+14155550143', 'sofia-ramirez', 'microneedling', -80, time '12:00', 'completed'),
  ('seed:appt:14', '+14155550143', 'sofia-ramirez', 'microneedling', -38, time '12:00', 'completed'),
  ('seed:appt:15', '+14155550152', 'jordan-lee', 'neurotoxin', -25, time '11:00', 'completed'),
  ('seed:appt:16', '+14155550150', 'maya-chen', 'neurotoxin', -20, time '12:30', 'no_show'),
  ('seed:appt:17', '+14155550157', 'jordan-lee', 'lip-filler', -12, time '12:00', 'cancelled'),
  ('seed:appt:18', '+14155550159', 'sofia-ramirez', 'chemical-peel', -70, time '13:00', 'completed'),
  ('seed:appt:19', '+14155550159', 'sofia-ramirez', 'chemical-peel', -40, time '13:00', 'no_show'),
  ('seed:appt:20', '+14155550156', 'maya-chen', 'lip-filler', -100, time '11:00', 'completed'),
  ('seed:appt:21', '+14155550156', 'maya-chen', 'neurotoxin', -14, time '12:00', 'completed'),
  ('seed:appt:22', '+14155550153', 'jordan-lee', 'neurotoxin', -3, time '12:30', 'completed'),
  ('seed:appt:23', '+14155550151', 'sofia-ramirez', 'hydrafacial', -2, time '11:30', 'completed'),
  ('seed:appt:24', '+14155550154', 'priya-nair', 'laser-hair-small', -55, time '12:00', 'completed'),
  ('seed:appt:25', '+14155550148', 'jordan-lee', 'neurotoxin', -130, time '11:00', 'completed'),
  ('seed:appt:26', '+14155550146', 'maya-chen', 'consultation', -5, time '13:00', 'completed'),
  ('seed:appt:27', '+14155550150', 'jordan-lee', 'neurotoxin', -65, time '11:30', 'completed'),
  ('seed:appt:28', '+14155550160', 'priya-nair', 'laser-hair-small', -8, time '11:30', 'no_show'),
  ('seed:appt:101', '+14155550141', 'maya-chen', 'neurotoxin', 1, time '11:00', 'confirmed'),
  ('seed:appt:102', '+14155550155', 'maya-chen', 'consultation', 2, time '13:00', 'booked'),
  ('seed:appt:103', '+14155550142', 'maya-chen', 'lip-filler', 3, time '12:00', 'booked'),
  ('seed:appt:104', '+14155550150', 'jordan-lee', 'neurotoxin', 2, time '11:30', 'booked'),
  ('seed:appt:105', '+14155550157', 'jordan-lee', 'cheek-filler', 4, time '12:00', 'booked'),
  ('seed:appt:106', '+14155550144', 'sofia-ramirez', 'hydrafacial', 1, time '11:00', 'confirmed'),
  ('seed:appt:107', '+14155550143', 'sofia-ramirez', 'microneedling', 2, time '12:00', 'booked'),
  ('seed:appt:108', '+14155550147', 'priya-nair', 'laser-hair-large', 1, time '11:00', 'booked'),
  ('seed:appt:109', '+14155550160', 'priya-nair', 'laser-hair-small', 3, time '11:30', 'booked')
) AS v(source_key, phone, provider_slug, service_slug, n, local_time, status)
JOIN clinics c ON c.slug = 'glow-medspa'
JOIN providers p ON p.clinic_id = current_setting('app.clinic_id')::bigint AND p.slug = v.provider_slug
JOIN services s ON s.clinic_id = current_setting('app.clinic_id')::bigint AND s.slug = v.service_slug
JOIN clients cl ON cl.clinic_id = current_setting('app.clinic_id')::bigint AND cl.phone_e164 = v.phone
-- The day: n < 0 is the provider's last working day at least -n days ago; n > 0 is the n-th upcoming working
-- day (tomorrow onward). Working day = non-empty working_hours entry and not a clinic holiday.
CROSS JOIN LATERAL (
  SELECT g.day
  FROM (SELECT (now() AT TIME ZONE c.timezone)::date + k AS day, k FROM generate_series(-220, 21) AS k) AS g
  WHERE jsonb_array_length(coalesce(p.working_hours -> to_char(g.day, 'dy'), '[]'::jsonb)) > 0
    AND NOT c.holidays @> to_jsonb(g.day::text)
    AND CASE WHEN v.n > 0 THEN g.k >= 1 ELSE g.k <= v.n END
  ORDER BY CASE WHEN v.n > 0 THEN g.k ELSE -g.k END
  OFFSET CASE WHEN v.n > 0 THEN v.n - 1 ELSE 0 END
  LIMIT 1
) AS d
CROSS JOIN LATERAL (SELECT (d.day + v.local_time) AT TIME ZONE c.timezone AS starts_at) AS t
-- Never trip the no-overlap exclusion constraint (e.g. a re-seed after the app booked that slot).
WHERE NOT (
  v.status IN ('pending_deposit','booked','confirmed') AND EXISTS (
    SELECT 1 FROM appointments a
    WHERE a.provider_id = p.id AND a.status IN ('pending_deposit','booked','confirmed')
      AND a.source_key IS DISTINCT FROM v.source_key
      AND tstzrange(a.starts_at, a.blocked_until, '[)')
          && tstzrange(t.starts_at, t.starts_at + make_interval(mins => s.duration_min + s.buffer_min), '[)')
  )
)
ON CONFLICT (clinic_id, source_key) DO NOTHING;

-- automations
INSERT INTO automations (clinic_id, kind, enabled, template, settings) VALUES
  (current_setting('app.clinic_id')::bigint, 'confirmation', true, 'Hi {first_name}, you''re booked at {clinic_name}: {service_name} with {provider_name} on {when}. Reply C to confirm or R to reschedule. Questions? Call {clinic_phone}.', '{"trigger": "appointment_booked", "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'reminder_24h', true, 'Hi {first_name}, a reminder from {clinic_name}: {service_name} with {provider_name} on {when}. Reply C to confirm or R to reschedule.', '{"offset_hours": 24, "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'reminder_2h', true, 'Hi {first_name}, see you soon at {clinic_name}: {service_name} with {provider_name} at {when}. Reply C to confirm or R to reschedule.', '{"offset_hours": 2, "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'deposit_reminder', true, 'Hi {first_name}, your {service_name} on {when} at {clinic_name} is on hold until the deposit is paid. Use the payment link we sent to keep your spot, or call {clinic_phone} for help.', '{"delay_minutes": 30, "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'aftercare', true, 'Hi {first_name}, thanks for visiting {clinic_name} for your {service_name}. How are you feeling? Reply here with any questions. If anything worries you, call {clinic_phone}.', '{"delay_hours": 24, "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'review_request', true, 'Hi {first_name}, thank you for choosing {clinic_name}! If you enjoyed your visit with {provider_name}, we''d love a quick review: {review_url}', '{"delay_hours": 48, "review_url": "https://glowmedspa.example/review", "min_days_between": 90, "category": "marketing"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'rebook_nudge', true, 'Hi {first_name}, it''s about time for your next {service_name} at {clinic_name}. Reply with a day that works and we''ll find you a time, or call {clinic_phone}.', '{"use_service_rebook_interval": true, "days_after_due": 0, "category": "marketing"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'no_show_followup', true, 'Hi {first_name}, we missed you today at {clinic_name}. We hope all is well! Reply here to rebook your {service_name}, or call {clinic_phone}.', '{"delay_hours": 2, "category": "transactional"}'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'win_back', true, 'Hi {first_name}, we miss you at {clinic_name}! It has been a while since your last visit. Reply here and we''ll find a time that suits you.', '{"inactive_days": 180, "category": "marketing"}'::jsonb)
ON CONFLICT (clinic_id, kind) DO UPDATE SET template = EXCLUDED.template, settings = EXCLUDED.settings
WHERE (automations.template, automations.settings) IS DISTINCT FROM (EXCLUDED.template, EXCLUDED.settings);

-- knowledge base: 30 documents, 63 chunks (embeddings filled by the ingest command)
INSERT INTO kb_documents (clinic_id, slug, title, body, source, content_hash)
SELECT current_setting('app.clinic_id')::bigint, v.slug, v.title, v.body, 'seed', md5(v.body)
FROM (VALUES
  ('acne-scarring-consultation', 'Acne scars: skin consultation and treatment options', 'Acne scars are one of the most common reasons people visit us. The good news is that most scars can be improved a lot with the right plan, though usually not erased completely.

Start with a free skin consultation: scars come in different types. Rolling scars, boxcar scars and icepick scars respond to different treatments, and dark marks left behind by acne (which are not true scars) need yet another approach. During your 30-minute consultation, our esthetician or provider will look at your skin, take photos, and build a plan with you.

Treatment options we offer:
- Microneedling: our main treatment for textured acne scars. It triggers new collagen to fill in and smooth scars. A typical plan is 3 to 6 sessions spaced 4 to 6 weeks apart, at $400 per session or $1,080 for a prepaid series of three.
- Chemical peels: help with dark marks, uneven tone and mild texture. Often alternated with microneedling.
- Filler: can lift some deeper, rolling scars.

Before starting: active acne should be under control first, as we do not microneedle over active breakouts. If you are on Accutane, you need to wait at least 6 months after your last dose before microneedling or peels. We may refer you to a dermatologist for active or cystic acne.

Patience pays off. Collagen builds slowly, and the full result of a series shows about 3 months after your last session. We take progress photos so you can see the change.'),
  ('adverse-reaction', 'Concerned after a treatment? What to do', 'Serious problems after our treatments are rare, but it is important to know what to watch for and who to call.

Call 911 right away if you have:
- Trouble breathing, wheezing, or a tight throat
- Swelling of the tongue, throat or face that is spreading quickly
- Any change in vision, such as blurry vision, loss of vision or double vision, after filler
- Chest pain, fainting, or signs of a stroke such as face drooping or slurred speech

Call us right away at (415) 555-0100, day or night, if you have:
- Skin near a filler site that turns white, gray, blue or blotchy, or severe pain that keeps getting worse. This can mean a blood vessel is blocked, which needs treatment within hours.
- Swelling that keeps increasing after 3 days, or swelling that comes back weeks later
- A hard, red, hot area, pus, or a fever, which can be signs of infection
- Hives, itching or a rash
- A drooping eyelid or brow, or trouble swallowing or speaking after Botox
- Blisters, burns, or crusting after laser or a peel

After business hours, our phone line connects you to the on-call provider.

When you text our number, a team member is alerted about urgent messages. But texting is not a substitute for emergency care: if something feels serious, call 911 or go to the nearest emergency room.

Normal, expected effects include mild redness, small bruises, mild swelling, and a little tenderness for a few days. Your aftercare sheet explains what is normal for your treatment. If you are not sure whether something is normal, please call us; we would always rather hear from you.'),
  ('aftercare-chemical-peel', 'Aftercare for chemical peels', 'A chemical peel removes old, dull surface skin so newer, smoother skin can come through. Being gentle while it peels is the key to a great result.

What to expect: your skin may feel tight and look a little shiny or pink for the first day or two. Light peels usually flake gently on days 2 to 4. Medium peels can peel in sheets for 5 to 7 days.

Do:
- Wash with a gentle, non-foaming cleanser and cool water.
- Moisturize often with a plain, fragrance-free moisturizer.
- Wear a mineral sunscreen (SPF 30 or higher) every day, and a hat when you are outside. New skin burns easily.

Do not:
- Pick, peel or scrub flaking skin. Let it come off on its own; pulling it early can cause dark spots or scarring. Trim loose flakes with clean scissors if they bother you.
- Use retinol, retinoids, acids, scrubs or vitamin C for 7 days.
- Wax, thread or use hair removal creams on the face for 7 days.
- Sweat heavily, swim, or use saunas and steam rooms for 48 hours.

Makeup can usually go back on after 24 hours for a light peel. Avoid other laser or skin treatments on the same area for two weeks.

Call us at (415) 555-0100 if you see blisters, oozing, crusting, or redness that is getting worse instead of better.'),
  ('aftercare-filler', 'Aftercare for dermal filler', 'Filler settles over about two weeks. Taking care of the area during that time helps you get a smooth, even result.

First 24 hours:
- Apply a cold pack wrapped in a cloth for 10 minutes at a time to reduce swelling.
- Avoid hard exercise, alcohol, saunas and hot tubs.
- Do not press or massage the area unless your injector asks you to.
- For lips, avoid lipstick and lip products for 12 hours, and drink through a normal cup instead of a straw for the first day.

First two weeks:
- Sleep on your back with your head slightly raised for the first two nights if you can.
- Avoid dental work, facials and other face treatments in the same area.
- Avoid long flights in the first few days if possible.

What is normal: swelling (lips often look fullest on day two), tenderness, small bruises, and small firm spots you can feel but not see. These settle within one to two weeks.

What is not normal: skin that turns white, gray, blue or blotchy near the treated area, severe or increasing pain, or changes in your vision. These need attention right away. Call us at (415) 555-0100 at any hour; our after-hours line reaches the on-call provider. If you have any change in vision or trouble breathing, call 911 first.

We will see you for a free follow-up check two to four weeks after treatment.'),
  ('aftercare-laser-hair-removal', 'Aftercare for laser hair removal', 'Laser hair removal is quick, and aftercare is simple. These steps keep your skin calm and help you get the best result from each session.

Right after treatment: the area may look red with small raised bumps around each follicle, a bit like goosebumps. This usually settles in a few hours, occasionally up to a day. A cool compress or plain aloe vera gel helps.

For the first 48 hours:
- Avoid hot showers, baths, saunas, hot tubs and hard exercise.
- Skip deodorant on treated underarms for 24 hours.
- Do not use scented lotions, retinoids, acids or exfoliating products on the area.

For the next two weeks:
- Protect the area from the sun and use SPF 30 or higher every day. No tanning beds or self-tanner.
- Shaving between sessions is fine. Do not wax, pluck, thread or use hair removal creams, because the laser needs the hair root in place.

Between 1 and 3 weeks after a session, treated hairs will start to shed. It can look like the hair is growing back, but it is falling out. Gently exfoliating in the shower after the first week helps it shed.

Most people need 6 to 8 sessions. Book small areas about every 4 to 6 weeks and large areas (legs, back) every 6 to 8 weeks.

Call us at (415) 555-0100 if you see blisters, crusting, or skin that turns darker or lighter than usual.'),
  ('aftercare-microneedling', 'Aftercare for microneedling', 'Microneedling creates tiny channels in the skin to trigger your own collagen production. Your skin needs gentle care for the first week while it repairs.

Day 1:
- Your skin will be red and warm, much like a mild sunburn. This is expected.
- Do not wash your face for at least 6 hours. After that, use lukewarm water and a gentle cleanser only.
- Apply only the hydrating serum or balm we give you. No makeup for 24 hours.
- Sleep on a clean pillowcase.

Days 2 to 7:
- Redness usually fades in 1 to 3 days. Your skin may feel tight, dry or rough, and may flake lightly. Do not pick or scrub.
- Use a gentle moisturizer and a mineral sunscreen (SPF 30 or higher) every day.
- Pause retinol, retinoids, vitamin C serums, acids and exfoliating scrubs for 5 to 7 days.
- Skip hard exercise, swimming pools, saunas and hot tubs for 48 hours.
- Stay out of direct sun as much as you can for two weeks.

Results build gradually. You may notice a fresh glow in a week, but collagen keeps building for about three months. For acne scars and texture, we recommend a series of three sessions spaced 4 to 6 weeks apart.

Call us at (415) 555-0100 if you notice increasing redness after day 3, pus, yellow crusting, fever, or a rash, which can be signs of infection.'),
  ('aftercare-neurotoxin', 'Aftercare for Botox and Dysport', 'A few simple steps help your neurotoxin treatment settle exactly where your injector placed it.

For the first 4 hours:
- Stay upright. Do not lie down flat or nap face-down.
- Do not rub, massage or press on the treated areas. That includes facials, tight hats and headbands.
- Gently move the treated muscles (frowning, raising your brows, squinting) a few times; it may help the product settle.

For the first 24 hours:
- Skip hard exercise, hot yoga, saunas and hot tubs.
- Avoid alcohol, which can make bruising more likely.
- You can wash your face gently and wear makeup after 4 hours.

What is normal: small bumps at the injection points that fade within 30 minutes, a small bruise, and a mild headache on the first day. Cool compresses help with any of these.

When will I see results? Most people notice the first changes in 3 to 5 days, and the full result appears at 14 days. Please do not judge the result before two weeks. If something looks uneven at the two-week mark, message us and we will book a free check.

Call us at (415) 555-0100 if you notice a drooping eyelid, trouble swallowing or speaking, or anything that worries you. These are rare. If you have trouble breathing, call 911.'),
  ('age-requirements', 'Age requirements', 'To keep everyone safe, we have minimum ages for our treatments.

18 and older:
- Botox, Dysport and other neurotoxins
- Lip, cheek and other dermal filler
- Microneedling
- Laser hair removal

16 and 17 year olds: HydraFacials and light chemical peels are available with written consent from a parent or legal guardian. A parent or guardian must come to the first appointment and sign the consent form in person. These treatments can help with teen acne and congested skin. We may recommend seeing a dermatologist first for moderate or severe acne.

Under 16: we do not offer treatments to patients under 16.

Please bring a photo ID to your first visit. We may ask for ID to confirm age before any injectable or laser treatment, no matter how old you look.

Is there an upper age limit? No. We treat patients of all adult ages. Older skin can respond beautifully to treatments like microneedling, peels and filler. We will review your health history and medications to make sure treatment is safe for you.'),
  ('bruising-swelling', 'Bruising and swelling after injections', 'Bruising and swelling are the most common side effects of injectable treatments. They are usually mild and go away on their own.

Why it happens: any needle can nick a tiny blood vessel under the skin. Some areas, like the lips and under the eyes, bruise more easily. Filler also draws in water, which adds to swelling in the first few days.

How long it lasts: a bruise from Botox is usually small and fades in 3 to 7 days. Filler bruises can take 7 to 10 days. Swelling after lip filler is usually worst on day two and settles within a week.

To lower your chances of bruising:
- For 24 to 48 hours before treatment, avoid alcohol, fish oil, vitamin E, ginkgo, ibuprofen, naproxen and aspirin, unless your doctor has prescribed them. Never stop a prescribed medication without talking to your doctor.
- Some patients take arnica tablets or use arnica gel before and after treatment.
- Do not schedule injectables within 2 weeks of a big event.

If you do bruise:
- Apply a cold pack wrapped in cloth for 10 minutes at a time during the first day.
- After 48 hours, gentle warmth can help a bruise fade.
- Concealer with a green or yellow tint covers most bruises well.
- If a bruise is still clearly visible after a week, send us a photo and we will advise you.

When to call us: swelling that keeps getting worse after 3 days, a hard, hot or very tender area, or skin color changes that are white, gray or blotchy rather than a normal purple bruise. Call (415) 555-0100.'),
  ('cancellation-deposit-policy', 'Cancellation and deposit policy', 'We keep our schedule tight so that patients can get in quickly. Here is how deposits and cancellations work.

Deposits: some treatments need a deposit to reserve your appointment time. These are $50 for Botox or Dysport, $100 for lip, cheek or other filler, $50 for microneedling, and $50 for large-area laser hair removal. HydraFacials, chemical peels, small-area laser and consultations do not need a deposit.

When you book by text or chat, we send you a secure payment link. Your time is held for 60 minutes while you pay the deposit; if it is not paid by then, the time is released so someone else can book it.

Deposits are applied to your treatment. The deposit is not an extra charge; it comes off your bill on the day of your appointment.

Cancelling or rescheduling: please give us at least 24 hours notice. If you cancel or reschedule 24 or more hours ahead, your deposit is refunded in full, or moved to your new appointment if you prefer. Inside 24 hours, the deposit is kept.

Late cancellations and no-shows for appointments without a deposit: cancelling with less than 24 hours notice, or not showing up, results in a $50 fee.

Running late? Text or call us. If you are more than 15 minutes late, we may need to shorten or reschedule your treatment so the next patient is not kept waiting.

We understand emergencies happen. If something unexpected comes up, contact us and we will do our best to help.

To cancel or reschedule, reply to any of our texts, use the chat on our website, or call (415) 555-0100.'),
  ('combining-treatments', 'Combining treatments', 'Many treatments work well together, and combining them can save you time. Some combinations need spacing, though, so your skin can heal properly.

Good to do at the same visit:
- Botox or Dysport plus filler. This is very common: neurotoxin relaxes lines caused by movement, and filler restores volume.
- HydraFacial before injectables. We do the facial first, then the injections.
- Laser hair removal on the body plus a facial treatment.

Space these out:
- Microneedling or a chemical peel and filler in the same area: at least 2 weeks apart, in either order.
- Microneedling and Botox: we usually do Botox first and microneedling 2 weeks later, or microneedling first and Botox a few days after.
- Chemical peels and laser in the same area: at least 2 weeks apart.
- Microneedling and chemical peels: at least 4 weeks apart.

Planning a series? For acne scars or texture, a popular plan alternates microneedling and peels about every 4 weeks. For an overall refresh, many patients do Botox every 3 months, a HydraFacial every month and filler once a year.

Before a big event like a wedding, start early. Book injectables at least 2 to 4 weeks before, and avoid trying any new treatment in the final two weeks.

Your provider will build a combined plan with you during your free consultation.'),
  ('comfort-numbing', 'Comfort during treatment: numbing and what it feels like', 'Many people feel a little nervous before their first treatment, and that is completely normal. We do everything we can to keep you comfortable, and we go at your pace.

For Botox and Dysport, we use very tiny, fine needles, much thinner than the ones used for a flu shot or a blood draw. Most patients describe a quick pinch that lasts a second or two per spot. The whole treatment usually takes about 10 minutes. We can hold an ice pack or a cool roller on the area right before each spot, which takes the edge off.

For lip and cheek filler, we apply a topical numbing cream about 20 minutes before we start. Most fillers also have lidocaine, a local anesthetic, mixed right into the gel, so the area becomes numb as the treatment goes on. Lips are more sensitive than other areas, and some patients feel pressure or a mild sting at first. For lips, we can also offer a small dental-style nerve block if you would like extra numbing.

Microneedling always starts with numbing cream, and most people say it feels like light sandpaper or a vibrating sensation. Laser hair removal feels like a warm snap, similar to a rubber band flick. Our lasers have built-in cooling to keep the skin comfortable. Chemical peels can tingle or feel warm for a few minutes; we use a small fan to cool the skin.

You are always in control. Tell your provider if you want to pause, need more ice, or want more numbing time. Sensitivity can be higher just before your period, after caffeine, or when you are tired, so you may want to plan around that.'),
  ('contraindications', 'Who should wait: health conditions and medications', 'Your safety comes first. Some health conditions and medications mean a treatment should be postponed, adjusted, or skipped. Please tell us about your health history when you book, and always talk to a provider if you are unsure.

Pregnancy and breastfeeding: we do not offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine. We are happy to plan your treatments for after.

Active infections: if you have a cold sore, acne cyst, rash, open wound or any skin infection in the treatment area, we will reschedule. If you get cold sores, tell us before lip filler or a peel; your doctor may suggest an antiviral medicine beforehand.

Certain medications: blood thinners (for example warfarin, or daily aspirin) raise the chance of bruising. Never stop a prescribed medicine on your own; talk to the doctor who prescribed it. Some antibiotics and other medicines make the skin more sensitive to light, which matters for laser and peels.

Accutane (isotretinoin): you need to be off Accutane for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.

Autoimmune and neuromuscular conditions: conditions such as lupus, scleroderma, myasthenia gravis, or a history of keloid scarring may affect which treatments are safe. Please talk to a provider before booking; a free consultation is the best first step.

Recent vaccines, dental work or surgery: let us know, as we may suggest waiting about two weeks before filler.'),
  ('downtime', 'Downtime by treatment', 'Downtime means how long it takes before you look and feel like yourself in public. Here is what to expect for each treatment we offer.

Botox and Dysport: practically none. You may have small bumps at the injection points for 15 to 30 minutes, and a small bruise is possible. Most people go straight back to work. Skip hard exercise and lying flat for 4 hours.

Lip filler: plan for 2 to 3 days of swelling, which can last up to a week. Lips often look their biggest on day two. Bruising is possible. Avoid booking lip filler right before a wedding or photo shoot; give yourself at least two weeks.

Cheek filler: mild swelling and tenderness for 1 to 3 days. Most people can return to work the same or next day.

HydraFacial: none. Your skin may look a little pink for an hour, and most people leave glowing.

Microneedling: redness similar to a sunburn for 1 to 3 days, then a few days of dryness or light flaking. Many patients book it on a Thursday or Friday so the worst is over the weekend.

Chemical peel: depends on the strength. Our light peels cause a few days of mild flaking. Medium peels can peel for 5 to 7 days.

Laser hair removal: redness and small bumps around the hair follicles for a few hours, sometimes up to a day.

If you have an event coming up, tell us the date when you book, and we will help you time your treatments.'),
  ('filler-pricing', 'Dermal filler pricing', 'Filler is priced by the syringe. Each syringe holds 1 milliliter of hyaluronic acid gel, which is about a fifth of a teaspoon. That sounds small, but it goes a long way in the face.

Lip filler: $750 per syringe. For a first-time, subtle result we also offer a half syringe for $450. Most first-time lip patients are happy with a half or one syringe.

Cheek filler: $800 per syringe. Cheeks usually need one to two syringes for a natural lift, depending on your goals and your starting point.

Chin and jawline filler: $800 per syringe, usually two or more syringes. We recommend a consultation first for these areas.

We use FDA-approved hyaluronic acid fillers such as the Juvederm and Restylane families. Your injector chooses the product that suits the area. Most fillers contain lidocaine, a numbing medicine, which keeps the treatment comfortable.

A $100 deposit is needed to book any filler appointment, and it is applied to your treatment. Your price includes a free follow-up check two to four weeks after treatment. If you decide you want more volume at that visit, additional filler is charged at the normal per-syringe price.

Not sure how much you need? Book a free consultation and your provider will give you a written quote before you commit to anything. Financing through Cherry is available for larger treatment plans.'),
  ('first-visit-consultation', 'Your first visit and free consultation', 'New to Glow MedSpa? Welcome. Here is what your first visit looks like.

Before you come: when you book, we text you a link to our new-patient forms. They ask about your health history, medications, allergies and skin goals, and take about 10 minutes. Filling them in ahead of time makes your visit faster.

Arriving: please arrive 10 minutes early and bring a photo ID. If you are coming for skin treatments, come with a clean face if you can, but do not worry if you are coming from work.

The consultation: consultations are free and last about 30 minutes. You will meet one of our providers, talk about what you would like to change, and get an honest opinion about what will and will not help. We take before photos for your private chart so we can compare later. You will leave with a written treatment plan and price quote.

Can I be treated the same day? Often, yes. If time allows and the treatment is a good fit, many patients have Botox or a HydraFacial at the same visit. Filler, microneedling and laser sometimes need a separate appointment, for example if you need to stop certain skincare products first.

There is never any pressure to book. Many patients take the plan home and think about it.

Who will I see? Our team includes Dr. Maya Chen, MD, our medical director; Jordan Lee, RN, nurse injector; Sofia Ramirez, licensed esthetician; and Priya Nair, laser technician.

To book, text us at (415) 555-0123, use our website chat, or call (415) 555-0100.'),
  ('gift-cards', 'Gift cards', 'Glow MedSpa gift cards make a great present for birthdays, holidays, or anyone who deserves a little care.

How to buy: you can buy a gift card at the front desk or by calling (415) 555-0100. We can email an e-gift card right away, or you can pick up a printed card in a gift envelope. Gift cards come in any amount from $50. Popular choices are $225 (a HydraFacial) and $350 (a typical Botox visit).

How to use: gift cards can be used toward any treatment, product or membership at Glow MedSpa. Bring the card or the email to your appointment, or tell us the gift card number when you check out. Gift cards can be combined with other payment methods, and can be used to pay a deposit at the front desk.

Expiration: our gift cards do not expire and have no fees.

Cash value: gift cards cannot be exchanged for cash, except that in California, balances under $10 can be paid out in cash on request.

Lost cards: if you lose a gift card, call us with the name of the purchaser and the approximate purchase date. We keep a record of every card and can usually look it up and replace it.

Gift cards cannot be used for Cherry financing payments.'),
  ('hours-holidays', 'Hours and holidays', 'Glow MedSpa is open six days a week:

- Monday to Friday: 9:00 AM to 7:00 PM
- Saturday: 9:00 AM to 3:00 PM
- Sunday: closed

All times are Pacific time. Our last appointments of the day start about an hour before closing, depending on the treatment. Evening and Saturday times fill up fastest, so we suggest booking those a week or two ahead.

Holiday closures for the 2026 season:
- Thanksgiving Day: Thursday, November 26, 2026
- Christmas Day: Friday, December 25, 2026
- New Year''s Day: Friday, January 1, 2027

We are open normal hours on the days before and after these holidays unless we let you know otherwise.

You can text us any time at (415) 555-0123. Our text line and website chat can answer questions and book appointments around the clock. A team member follows up on anything that needs a person during business hours.

If you have an urgent concern after a treatment outside business hours, call (415) 555-0100 and follow the prompts to reach our on-call provider. For a medical emergency, call 911.'),
  ('how-long-results-last', 'How long results last', 'Results vary from person to person, but these are typical timelines for our treatments.

Botox and Dysport: results start to show in 3 to 5 days, peak at about 2 weeks, and last 3 to 4 months. People with strong muscles or a fast metabolism, and people who exercise a lot, may find it wears off a little sooner. With regular treatments, many people find results last longer over time.

Lip filler: 6 to 12 months. Lips move constantly, so filler there breaks down faster than in other areas.

Cheek filler: 12 to 18 months, sometimes longer.

Chin and jawline filler: 12 to 18 months.

HydraFacial: the glow lasts about a week. Regular monthly facials keep skin clearer and more hydrated over time.

Microneedling: collagen builds for about 3 months after each session, and results from a full series can last a year or more. A maintenance session once or twice a year helps keep it up.

Chemical peels: smoother, brighter skin for several weeks. Many people repeat a peel every 4 to 6 weeks during a series.

Laser hair removal: after a full series of 6 to 8 sessions, most people see a long-lasting reduction of 70 to 90 percent of hair in the area. Some hair may return over the years, especially with hormonal changes, so a touch-up session once or twice a year is common.

We will send you a friendly reminder when it is about time for your next visit. You can reply STOP at any time if you would rather not get these texts.'),
  ('hydrafacial-what-to-expect', 'HydraFacial: what to expect', 'The HydraFacial is our most popular facial and a great first treatment if you are new to med spa care. It cleans, exfoliates and hydrates your skin in one visit, with no downtime.

How it works: the treatment uses a handheld device with a spiral tip that gently cleans and exfoliates while it pulls out oil and debris from your pores. Then we apply serums matched to your skin, such as hydrating, brightening or calming boosters. There are no needles, and most people find it relaxing. It feels like a cool, gentle suction.

Your appointment takes about 60 minutes, including a short skin check and time to choose your boosters. The price is $225, and optional boosters start at $50. No deposit is needed to book.

Who is it for? Almost everyone, including sensitive skin, oily or congested skin, dull or dehydrated skin, and people who want a refresh before an event. Pregnant patients can usually have a modified HydraFacial; let us know so we can choose safe serums.

After your facial: your skin may look slightly pink for up to an hour and will feel smooth and glowy. We suggest skipping heavy makeup, retinol and exfoliating products for the rest of the day. Use sunscreen as always.

The glow lasts about a week. For ongoing skin health, most people book a HydraFacial every 4 weeks. It is included every month in the Glow Club membership.'),
  ('location-parking', 'Location and parking', 'Glow MedSpa is in Pacific Heights, San Francisco:

2150 Fillmore Street, Suite 200
San Francisco, CA 94115

We are on the second floor, above the bakery, between California Street and Sacramento Street. The building has an elevator and is wheelchair accessible. Ring the Suite 200 buzzer at the street door and we will let you in.

Parking: metered street parking is available on Fillmore Street and the side streets, usually with a 2-hour limit. Spots are easier to find before 11:00 AM. The closest garage is the Sutter Street public garage, about a 5-minute walk south. We validate 2 hours of parking at that garage; bring your ticket to the front desk.

Public transit: the 22 Fillmore bus stops half a block away, and the 1 California and 3 Jackson lines stop within a few blocks. There is bike parking in front of the building.

Rideshare: ask to be dropped off at 2150 Fillmore Street. There is a short loading zone in front of the building.

Please plan to arrive 10 minutes early for your first visit so you have time to park and check in.'),
  ('membership', 'Glow Club membership', 'The Glow Club is our monthly membership for patients who come in regularly. It is the best value if you like to keep up with your skin or Botox.

What it costs: $99 per month.

What is included:
- One HydraFacial or one chemical peel every month (a $180 to $225 value)
- Botox at $12 per unit instead of $14
- 10 percent off filler, microneedling and laser hair removal packages
- 10 percent off skincare products
- Member-only offers and early access to new treatments

Unused monthly facials roll over for one month, so you can save one and have two the next month.

Terms: the membership has a 3-month minimum. After that, you can cancel any time with 30 days notice. You can pause your membership for up to 2 months once a year, for example for travel or pregnancy. Membership is for one person and cannot be shared, but you can use member pricing on a gift card for someone else.

Billing: your card is charged on the same day each month, starting on the day you join.

How to join: ask at your next visit, call (415) 555-0100, or text us at (415) 555-0123. Most members say the membership pays for itself in the first month.'),
  ('mens-treatments', 'Treatments for men', 'About one in five of our patients are men, and the number is growing. Our providers are experienced in treating men''s faces and skin and aim for results that look natural and masculine.

Popular treatments for men:

Botox and Dysport: men usually have stronger facial muscles, so they often need a few more units than women for the same area. Common areas are the frown lines, forehead and crow''s feet. The goal is a rested, less tired look, not a frozen one. Jaw (masseter) treatment is also popular for teeth grinding and jaw clenching, and can slim a wide jaw.

Filler: chin and jawline filler can add definition and balance the profile. Under-eye and cheek filler can reduce a tired look.

Laser hair removal: back, chest, shoulders and the beard line (neck cleanup) are the most requested areas. It also helps men who get ingrown hairs and razor bumps from shaving.

HydraFacial and chemical peels: good for oily skin, large pores, and shaving irritation.

What to expect: our process is the same for everyone. You will start with a free 30-minute consultation, get a clear plan and price, and decide at your own pace. Treatments are quick, and most have little or no downtime, so they fit into a lunch break.

Prices are the same for everyone. For example, Botox is $14 per unit; men typically need 25 to 40 units for the upper face.'),
  ('neurotoxin-pricing', 'Botox and Dysport pricing', 'We price neurotoxin treatments by the unit, so you only pay for what you need. Botox is $14 per unit. Dysport is dosed differently (it takes roughly two and a half to three Dysport units to equal one Botox unit), so we charge $5 per Dysport unit and the total usually ends up about the same. Xeomin is available on request at $14 per unit.

How many units do people usually need? Every face is different, but these are common ranges:

- Frown lines between the brows: 15 to 25 units
- Forehead lines: 8 to 20 units
- Crow''s feet (both sides): 12 to 24 units
- Lip flip: 4 to 6 units
- Jaw (masseter) slimming: 40 to 60 units

Most patients spend around $350 per visit, which covers roughly 25 units. Your injector will map out a plan at the start of your appointment and tell you the unit count and price before treating.

A $50 deposit holds your appointment and is applied to your treatment. Results last about three to four months, so most patients come back every three months. Glow Club members pay $12 per unit.

The price includes a check at two weeks. If an area has not responded fully, small top-ups at that check are free. See our touch-up policy for details.'),
  ('payment-financing', 'Payment methods and financing', 'We want paying for your treatment to be easy.

We accept:
- Visa, Mastercard, American Express and Discover
- Apple Pay and Google Pay
- Cash
- Glow MedSpa gift cards
- HSA and FSA cards, for eligible services

We do not accept personal checks.

HSA and FSA cards: cosmetic treatments are usually not eligible for HSA or FSA funds. Some treatments with a medical purpose may qualify, for example Botox for certain medical conditions when your doctor has documented it. Check with your plan administrator before your visit. We can give you an itemized receipt.

Financing with Cherry: Cherry lets you split the cost of your treatment into monthly payments. Applying takes about a minute and does not affect your credit score to check your options. Plans with 0 APR are available for qualified applicants, and approval amounts depend on your credit. Ask the front desk or apply from the link on our website before your visit.

Deposits: deposits are paid online by card through a secure link that we text or show in the chat. They are applied to your treatment on the day.

Insurance: we do not bill health insurance. We can provide receipts you may submit yourself.

Payment is due at the end of each visit. Prepaid packages and memberships are charged when you sign up.'),
  ('prep-injectables', 'How to prepare for Botox and filler', 'A little preparation helps lower bruising and makes your appointment go smoothly.

24 to 48 hours before:
- Avoid alcohol.
- Avoid supplements and medicines that thin the blood, such as fish oil, vitamin E, ginkgo, St. John''s wort, ibuprofen (Advil, Motrin), naproxen (Aleve) and aspirin. Acetaminophen (Tylenol) is fine if you need something for a headache.
- Important: do not stop any medicine your doctor has prescribed, including a daily aspirin, without talking to your doctor first. Just let us know you take it.

One to two weeks before:
- Avoid dental cleanings or dental work for 2 weeks before and after filler.
- If you get cold sores and are having lip filler, tell us. Your doctor may prescribe an antiviral to take beforehand.
- Let us know about any recent vaccines, illness or surgery.

On the day:
- Come with a clean face if possible, or we can cleanse your skin.
- Eat a normal meal beforehand.
- Bring a list of your medications and supplements.
- If you want to, bring a reference photo of a look you like. It helps us understand your goals.

Please reschedule if you have a cold sore, a skin infection, or you are feeling unwell. If you are pregnant or breastfeeding, we will wait to treat you.

Planning for an event? Book neurotoxin at least 2 weeks before, and filler 2 to 4 weeks before, to allow time for results to settle and any bruising to fade.'),
  ('pricing-overview', 'Pricing overview', 'Here is a quick guide to what treatments cost at Glow MedSpa. Prices are per treatment and include your follow-up check where one applies. Your provider will confirm the exact price before anything is done, so there are never surprises at checkout.

Injectables: Botox and Dysport are priced per unit. Botox is $14 per unit, and most patients spend about $350 for a typical visit (for example, frown lines plus forehead). Lip filler is $750 per syringe, and a half-syringe lip option is $450. Cheek filler is $800 per syringe; most people need one or two syringes.

Skin treatments: a HydraFacial is $225. Microneedling is $400 per session, or $1,080 for a series of three when prepaid. A chemical peel is $180.

Laser hair removal: small areas (upper lip, chin, underarms, bikini line) are $150 per session. Large areas (full legs, back, chest) are $350 per session. Packages of six sessions are billed as five, so the sixth is free.

Consultations are always free and take about 30 minutes.

Some treatments need a deposit to hold your appointment: $50 for Botox or Dysport, $100 for filler, and $50 for microneedling or large-area laser. The deposit is applied to your treatment on the day. Members of the Glow Club pay lower prices on many services. Ask us about financing with Cherry if you would like to spread out the cost.'),
  ('privacy', 'Privacy of your information', 'We take the privacy of your health information seriously. Here is how we handle it.

Your records: your health history, treatment notes and photos are stored in a secure, access-controlled system. Only the staff involved in your care can see them. We follow HIPAA, the federal law that protects health information, and California''s medical privacy laws.

Photos: we take before and after photos for your medical chart. We never use your photos in advertising or on social media without your separate, written permission, and you can withdraw that permission at any time.

Texting and chat: our text line and website chat help with booking, reminders and general questions. Text messages are not fully secure, so please do not send detailed medical history, insurance or card numbers by text. Call us if you would like to discuss something sensitive. We never ask for your card number by text; deposits are paid through a secure payment link.

Marketing messages: we only send marketing texts if you agreed to receive them. Reply STOP at any time to stop receiving texts, and HELP for help. We never sell or rent your phone number or personal information.

Your rights: you can ask for a copy of your records, ask us to correct them, or ask who has seen them. Contact our office manager at (415) 555-0100 or privacy@glowmedspa.example.

We keep your records for as long as the law requires, then dispose of them securely.'),
  ('sun-exposure-laser', 'Sun exposure and laser treatments', 'Laser light targets pigment. Tanned skin has more pigment, which raises the chance of burns, blisters and dark or light spots. That is why sun protection matters so much before and after laser hair removal.

Before your laser session:
- Avoid sun tanning, tanning beds and spray or self-tanner for 2 weeks before treatment.
- If you have a tan, tell us. We may lower the settings or postpone your session until it fades.
- Shave the area 12 to 24 hours before your appointment. Do not wax, pluck or thread for 4 weeks before.
- Come with clean skin, with no lotion, deodorant or makeup on the area.

After your laser session:
- Avoid direct sun on the treated area for 2 weeks.
- Use a broad-spectrum sunscreen, SPF 30 or higher, every day, even when it is cloudy. Reapply every 2 hours when outside.
- Wear protective clothing or a hat.

Planning around summer: many patients start laser hair removal in the fall or winter, when it is easier to keep skin out of the sun. Treating during summer is possible for areas that stay covered, such as underarms or bikini line.

Medications: some medicines, including certain antibiotics, acne treatments and herbal supplements, make skin more sensitive to light. Tell us about all medications at each visit. You need to be off Accutane for at least 6 months before laser treatment.

Our laser works for a wide range of skin tones. Your laser technician will do a patch test on your first visit if needed.'),
  ('touch-up-policy', 'Touch-up policy', 'We want you to love your results. Here is how follow-ups and touch-ups work.

Botox and Dysport: neurotoxin takes up to 2 weeks to show its full effect, so please wait the full 2 weeks before judging your result. If, after 2 weeks, an area looks uneven or has not fully relaxed, contact us within 4 weeks of your treatment. We will book a free touch-up check, and any small top-up needed at that visit is free of charge. This applies to the areas treated at your original appointment.

If you would like a stronger result in a treated area, or want a new area treated, additional units are charged at the normal per-unit price.

Filler: every filler treatment includes a free follow-up check 2 to 4 weeks afterward, when swelling has settled. If you would like more volume, additional filler is charged at the normal per-syringe price. If a small area is uneven, your injector may be able to adjust it at no charge.

Skin and laser treatments: results from facials, peels, microneedling and laser build over a series, so there are no touch-ups for these. If you have any concerns about how your skin responded, contact us and we will book a free check.

To request a touch-up check, text us at (415) 555-0123 or call (415) 555-0100. If possible, send us a photo taken in good light with your face relaxed and in motion.')
) AS v(slug, title, body)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  title = EXCLUDED.title, body = EXCLUDED.body, content_hash = EXCLUDED.content_hash, updated_at = now()
WHERE (kb_documents.title, kb_documents.content_hash) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content_hash);

INSERT INTO kb_chunks (clinic_id, document_id, chunk_index, title, content)
SELECT current_setting('app.clinic_id')::bigint, d.id, v.chunk_index, v.title, v.content
FROM (VALUES
  ('acne-scarring-consultation', 0, 'Acne scars: skin consultation and treatment options', 'Acne scars are one of the most common reasons people visit us. The good news is that most scars can be improved a lot with the right plan, though usually not erased completely.

Start with a free skin consultation: scars come in different types. Rolling scars, boxcar scars and icepick scars respond to different treatments, and dark marks left behind by acne (which are not true scars) need yet another approach. During your 30-minute consultation, our esthetician or provider will look at your skin, take photos, and build a plan with you.'),
  ('acne-scarring-consultation', 1, 'Acne scars: skin consultation and treatment options', 'Treatment options we offer:
- Microneedling: our main treatment for textured acne scars. It triggers new collagen to fill in and smooth scars. A typical plan is 3 to 6 sessions spaced 4 to 6 weeks apart, at $400 per session or $1,080 for a prepaid series of three.
- Chemical peels: help with dark marks, uneven tone and mild texture. Often alternated with microneedling.
- Filler: can lift some deeper, rolling scars.

Before starting: active acne should be under control first, as we do not microneedle over active breakouts. If you are on Accutane, you need to wait at least 6 months after your last dose before microneedling or peels. We may refer you to a dermatologist for active or cystic acne.

Patience pays off. Collagen builds slowly, and the full result of a series shows about 3 months after your last session. We take progress photos so you can see the change.'),
  ('adverse-reaction', 0, 'Concerned after a treatment? What to do', 'Serious problems after our treatments are rare, but it is important to know what to watch for and who to call.

Call 911 right away if you have:
- Trouble breathing, wheezing, or a tight throat
- Swelling of the tongue, throat or face that is spreading quickly
- Any change in vision, such as blurry vision, loss of vision or double vision, after filler
- Chest pain, fainting, or signs of a stroke such as face drooping or slurred speech'),
  ('adverse-reaction', 1, 'Concerned after a treatment? What to do', 'Call us right away at (415) 555-0100, day or night, if you have:
- Skin near a filler site that turns white, gray, blue or blotchy, or severe pain that keeps getting worse. This can mean a blood vessel is blocked, which needs treatment within hours.
- Swelling that keeps increasing after 3 days, or swelling that comes back weeks later
- A hard, red, hot area, pus, or a fever, which can be signs of infection
- Hives, itching or a rash
- A drooping eyelid or brow, or trouble swallowing or speaking after Botox
- Blisters, burns, or crusting after laser or a peel'),
  ('adverse-reaction', 2, 'Concerned after a treatment? What to do', 'After business hours, our phone line connects you to the on-call provider.

When you text our number, a team member is alerted about urgent messages. But texting is not a substitute for emergency care: if something feels serious, call 911 or go to the nearest emergency room.

Normal, expected effects include mild redness, small bruises, mild swelling, and a little tenderness for a few days. Your aftercare sheet explains what is normal for your treatment. If you are not sure whether something is normal, please call us; we would always rather hear from you.'),
  ('aftercare-chemical-peel', 0, 'Aftercare for chemical peels', 'A chemical peel removes old, dull surface skin so newer, smoother skin can come through. Being gentle while it peels is the key to a great result.

What to expect: your skin may feel tight and look a little shiny or pink for the first day or two. Light peels usually flake gently on days 2 to 4. Medium peels can peel in sheets for 5 to 7 days.

Do:
- Wash with a gentle, non-foaming cleanser and cool water.
- Moisturize often with a plain, fragrance-free moisturizer.
- Wear a mineral sunscreen (SPF 30 or higher) every day, and a hat when you are outside. New skin burns easily.'),
  ('aftercare-chemical-peel', 1, 'Aftercare for chemical peels', 'Do not:
- Pick, peel or scrub flaking skin. Let it come off on its own; pulling it early can cause dark spots or scarring. Trim loose flakes with clean scissors if they bother you.
- Use retinol, retinoids, acids, scrubs or vitamin C for 7 days.
- Wax, thread or use hair removal creams on the face for 7 days.
- Sweat heavily, swim, or use saunas and steam rooms for 48 hours.

Makeup can usually go back on after 24 hours for a light peel. Avoid other laser or skin treatments on the same area for two weeks.

Call us at (415) 555-0100 if you see blisters, oozing, crusting, or redness that is getting worse instead of better.'),
  ('aftercare-filler', 0, 'Aftercare for dermal filler', 'Filler settles over about two weeks. Taking care of the area during that time helps you get a smooth, even result.

First 24 hours:
- Apply a cold pack wrapped in a cloth for 10 minutes at a time to reduce swelling.
- Avoid hard exercise, alcohol, saunas and hot tubs.
- Do not press or massage the area unless your injector asks you to.
- For lips, avoid lipstick and lip products for 12 hours, and drink through a normal cup instead of a straw for the first day.

First two weeks:
- Sleep on your back with your head slightly raised for the first two nights if you can.
- Avoid dental work, facials and other face treatments in the same area.
- Avoid long flights in the first few days if possible.'),
  ('aftercare-filler', 1, 'Aftercare for dermal filler', 'What is normal: swelling (lips often look fullest on day two), tenderness, small bruises, and small firm spots you can feel but not see. These settle within one to two weeks.

What is not normal: skin that turns white, gray, blue or blotchy near the treated area, severe or increasing pain, or changes in your vision. These need attention right away. Call us at (415) 555-0100 at any hour; our after-hours line reaches the on-call provider. If you have any change in vision or trouble breathing, call 911 first.

We will see you for a free follow-up check two to four weeks after treatment.'),
  ('aftercare-laser-hair-removal', 0, 'Aftercare for laser hair removal', 'Laser hair removal is quick, and aftercare is simple. These steps keep your skin calm and help you get the best result from each session.

Right after treatment: the area may look red with small raised bumps around each follicle, a bit like goosebumps. This usually settles in a few hours, occasionally up to a day. A cool compress or plain aloe vera gel helps.

For the first 48 hours:
- Avoid hot showers, baths, saunas, hot tubs and hard exercise.
- Skip deodorant on treated underarms for 24 hours.
- Do not use scented lotions, retinoids, acids or exfoliating products on the area.'),
  ('aftercare-laser-hair-removal', 1, 'Aftercare for laser hair removal', 'For the next two weeks:
- Protect the area from the sun and use SPF 30 or higher every day. No tanning beds or self-tanner.
- Shaving between sessions is fine. Do not wax, pluck, thread or use hair removal creams, because the laser needs the hair root in place.

Between 1 and 3 weeks after a session, treated hairs will start to shed. It can look like the hair is growing back, but it is falling out. Gently exfoliating in the shower after the first week helps it shed.

Most people need 6 to 8 sessions. Book small areas about every 4 to 6 weeks and large areas (legs, back) every 6 to 8 weeks.

Call us at (415) 555-0100 if you see blisters, crusting, or skin that turns darker or lighter than usual.'),
  ('aftercare-microneedling', 0, 'Aftercare for microneedling', 'Microneedling creates tiny channels in the skin to trigger your own collagen production. Your skin needs gentle care for the first week while it repairs.

Day 1:
- Your skin will be red and warm, much like a mild sunburn. This is expected.
- Do not wash your face for at least 6 hours. After that, use lukewarm water and a gentle cleanser only.
- Apply only the hydrating serum or balm we give you. No makeup for 24 hours.
- Sleep on a clean pillowcase.'),
  ('aftercare-microneedling', 1, 'Aftercare for microneedling', 'Days 2 to 7:
- Redness usually fades in 1 to 3 days. Your skin may feel tight, dry or rough, and may flake lightly. Do not pick or scrub.
- Use a gentle moisturizer and a mineral sunscreen (SPF 30 or higher) every day.
- Pause retinol, retinoids, vitamin C serums, acids and exfoliating scrubs for 5 to 7 days.
- Skip hard exercise, swimming pools, saunas and hot tubs for 48 hours.
- Stay out of direct sun as much as you can for two weeks.

Results build gradually. You may notice a fresh glow in a week, but collagen keeps building for about three months. For acne scars and texture, we recommend a series of three sessions spaced 4 to 6 weeks apart.

Call us at (415) 555-0100 if you notice increasing redness after day 3, pus, yellow crusting, fever, or a rash, which can be signs of infection.'),
  ('aftercare-neurotoxin', 0, 'Aftercare for Botox and Dysport', 'A few simple steps help your neurotoxin treatment settle exactly where your injector placed it.

For the first 4 hours:
- Stay upright. Do not lie down flat or nap face-down.
- Do not rub, massage or press on the treated areas. That includes facials, tight hats and headbands.
- Gently move the treated muscles (frowning, raising your brows, squinting) a few times; it may help the product settle.

For the first 24 hours:
- Skip hard exercise, hot yoga, saunas and hot tubs.
- Avoid alcohol, which can make bruising more likely.
- You can wash your face gently and wear makeup after 4 hours.'),
  ('aftercare-neurotoxin', 1, 'Aftercare for Botox and Dysport', 'What is normal: small bumps at the injection points that fade within 30 minutes, a small bruise, and a mild headache on the first day. Cool compresses help with any of these.

When will I see results? Most people notice the first changes in 3 to 5 days, and the full result appears at 14 days. Please do not judge the result before two weeks. If something looks uneven at the two-week mark, message us and we will book a free check.

Call us at (415) 555-0100 if you notice a drooping eyelid, trouble swallowing or speaking, or anything that worries you. These are rare. If you have trouble breathing, call 911.'),
  ('age-requirements', 0, 'Age requirements', 'To keep everyone safe, we have minimum ages for our treatments.

18 and older:
- Botox, Dysport and other neurotoxins
- Lip, cheek and other dermal filler
- Microneedling
- Laser hair removal

16 and 17 year olds: HydraFacials and light chemical peels are available with written consent from a parent or legal guardian. A parent or guardian must come to the first appointment and sign the consent form in person. These treatments can help with teen acne and congested skin. We may recommend seeing a dermatologist first for moderate or severe acne.'),
  ('age-requirements', 1, 'Age requirements', 'Under 16: we do not offer treatments to patients under 16.

Please bring a photo ID to your first visit. We may ask for ID to confirm age before any injectable or laser treatment, no matter how old you look.

Is there an upper age limit? No. We treat patients of all adult ages. Older skin can respond beautifully to treatments like microneedling, peels and filler. We will review your health history and medications to make sure treatment is safe for you.'),
  ('bruising-swelling', 0, 'Bruising and swelling after injections', 'Bruising and swelling are the most common side effects of injectable treatments. They are usually mild and go away on their own.

Why it happens: any needle can nick a tiny blood vessel under the skin. Some areas, like the lips and under the eyes, bruise more easily. Filler also draws in water, which adds to swelling in the first few days.

How long it lasts: a bruise from Botox is usually small and fades in 3 to 7 days. Filler bruises can take 7 to 10 days. Swelling after lip filler is usually worst on day two and settles within a week.'),
  ('bruising-swelling', 1, 'Bruising and swelling after injections', 'To lower your chances of bruising:
- For 24 to 48 hours before treatment, avoid alcohol, fish oil, vitamin E, ginkgo, ibuprofen, naproxen and aspirin, unless your doctor has prescribed them. Never stop a prescribed medication without talking to your doctor.
- Some patients take arnica tablets or use arnica gel before and after treatment.
- Do not schedule injectables within 2 weeks of a big event.'),
  ('bruising-swelling', 2, 'Bruising and swelling after injections', 'If you do bruise:
- Apply a cold pack wrapped in cloth for 10 minutes at a time during the first day.
- After 48 hours, gentle warmth can help a bruise fade.
- Concealer with a green or yellow tint covers most bruises well.
- If a bruise is still clearly visible after a week, send us a photo and we will advise you.

When to call us: swelling that keeps getting worse after 3 days, a hard, hot or very tender area, or skin color changes that are white, gray or blotchy rather than a normal purple bruise. Call (415) 555-0100.'),
  ('cancellation-deposit-policy', 0, 'Cancellation and deposit policy', 'We keep our schedule tight so that patients can get in quickly. Here is how deposits and cancellations work.

Deposits: some treatments need a deposit to reserve your appointment time. These are $50 for Botox or Dysport, $100 for lip, cheek or other filler, $50 for microneedling, and $50 for large-area laser hair removal. HydraFacials, chemical peels, small-area laser and consultations do not need a deposit.

When you book by text or chat, we send you a secure payment link. Your time is held for 60 minutes while you pay the deposit; if it is not paid by then, the time is released so someone else can book it.

Deposits are applied to your treatment. The deposit is not an extra charge; it comes off your bill on the day of your appointment.'),
  ('cancellation-deposit-policy', 1, 'Cancellation and deposit policy', 'Cancelling or rescheduling: please give us at least 24 hours notice. If you cancel or reschedule 24 or more hours ahead, your deposit is refunded in full, or moved to your new appointment if you prefer. Inside 24 hours, the deposit is kept.

Late cancellations and no-shows for appointments without a deposit: cancelling with less than 24 hours notice, or not showing up, results in a $50 fee.

Running late? Text or call us. If you are more than 15 minutes late, we may need to shorten or reschedule your treatment so the next patient is not kept waiting.

We understand emergencies happen. If something unexpected comes up, contact us and we will do our best to help.

To cancel or reschedule, reply to any of our texts, use the chat on our website, or call (415) 555-0100.'),
  ('combining-treatments', 0, 'Combining treatments', 'Many treatments work well together, and combining them can save you time. Some combinations need spacing, though, so your skin can heal properly.

Good to do at the same visit:
- Botox or Dysport plus filler. This is very common: neurotoxin relaxes lines caused by movement, and filler restores volume.
- HydraFacial before injectables. We do the facial first, then the injections.
- Laser hair removal on the body plus a facial treatment.

Space these out:
- Microneedling or a chemical peel and filler in the same area: at least 2 weeks apart, in either order.
- Microneedling and Botox: we usually do Botox first and microneedling 2 weeks later, or microneedling first and Botox a few days after.
- Chemical peels and laser in the same area: at least 2 weeks apart.
- Microneedling and chemical peels: at least 4 weeks apart.'),
  ('combining-treatments', 1, 'Combining treatments', 'Planning a series? For acne scars or texture, a popular plan alternates microneedling and peels about every 4 weeks. For an overall refresh, many patients do Botox every 3 months, a HydraFacial every month and filler once a year.

Before a big event like a wedding, start early. Book injectables at least 2 to 4 weeks before, and avoid trying any new treatment in the final two weeks.

Your provider will build a combined plan with you during your free consultation.'),
  ('comfort-numbing', 0, 'Comfort during treatment: numbing and what it feels like', 'Many people feel a little nervous before their first treatment, and that is completely normal. We do everything we can to keep you comfortable, and we go at your pace.

For Botox and Dysport, we use very tiny, fine needles, much thinner than the ones used for a flu shot or a blood draw. Most patients describe a quick pinch that lasts a second or two per spot. The whole treatment usually takes about 10 minutes. We can hold an ice pack or a cool roller on the area right before each spot, which takes the edge off.'),
  ('comfort-numbing', 1, 'Comfort during treatment: numbing and what it feels like', 'For lip and cheek filler, we apply a topical numbing cream about 20 minutes before we start. Most fillers also have lidocaine, a local anesthetic, mixed right into the gel, so the area becomes numb as the treatment goes on. Lips are more sensitive than other areas, and some patients feel pressure or a mild sting at first. For lips, we can also offer a small dental-style nerve block if you would like extra numbing.'),
  ('comfort-numbing', 2, 'Comfort during treatment: numbing and what it feels like', 'Microneedling always starts with numbing cream, and most people say it feels like light sandpaper or a vibrating sensation. Laser hair removal feels like a warm snap, similar to a rubber band flick. Our lasers have built-in cooling to keep the skin comfortable. Chemical peels can tingle or feel warm for a few minutes; we use a small fan to cool the skin.

You are always in control. Tell your provider if you want to pause, need more ice, or want more numbing time. Sensitivity can be higher just before your period, after caffeine, or when you are tired, so you may want to plan around that.'),
  ('contraindications', 0, 'Who should wait: health conditions and medications', 'Your safety comes first. Some health conditions and medications mean a treatment should be postponed, adjusted, or skipped. Please tell us about your health history when you book, and always talk to a provider if you are unsure.

Pregnancy and breastfeeding: we do not offer Botox, Dysport, filler, chemical peels, microneedling or laser hair removal while you are pregnant or breastfeeding. A modified HydraFacial is usually fine. We are happy to plan your treatments for after.

Active infections: if you have a cold sore, acne cyst, rash, open wound or any skin infection in the treatment area, we will reschedule. If you get cold sores, tell us before lip filler or a peel; your doctor may suggest an antiviral medicine beforehand.'),
  ('contraindications', 1, 'Who should wait: health conditions and medications', 'Certain medications: blood thinners (for example warfarin, or daily aspirin) raise the chance of bruising. Never stop a prescribed medicine on your own; talk to the doctor who prescribed it. Some antibiotics and other medicines make the skin more sensitive to light, which matters for laser and peels.

Accutane (isotretinoin): you need to be off Accutane for at least 6 months before chemical peels, microneedling or laser treatments, because the skin heals differently while on it and for months after.

Autoimmune and neuromuscular conditions: conditions such as lupus, scleroderma, myasthenia gravis, or a history of keloid scarring may affect which treatments are safe. Please talk to a provider before booking; a free consultation is the best first step.

Recent vaccines, dental work or surgery: let us know, as we may suggest waiting about two weeks before filler.'),
  ('downtime', 0, 'Downtime by treatment', 'Downtime means how long it takes before you look and feel like yourself in public. Here is what to expect for each treatment we offer.

Botox and Dysport: practically none. You may have small bumps at the injection points for 15 to 30 minutes, and a small bruise is possible. Most people go straight back to work. Skip hard exercise and lying flat for 4 hours.

Lip filler: plan for 2 to 3 days of swelling, which can last up to a week. Lips often look their biggest on day two. Bruising is possible. Avoid booking lip filler right before a wedding or photo shoot; give yourself at least two weeks.

Cheek filler: mild swelling and tenderness for 1 to 3 days. Most people can return to work the same or next day.'),
  ('downtime', 1, 'Downtime by treatment', 'HydraFacial: none. Your skin may look a little pink for an hour, and most people leave glowing.

Microneedling: redness similar to a sunburn for 1 to 3 days, then a few days of dryness or light flaking. Many patients book it on a Thursday or Friday so the worst is over the weekend.

Chemical peel: depends on the strength. Our light peels cause a few days of mild flaking. Medium peels can peel for 5 to 7 days.

Laser hair removal: redness and small bumps around the hair follicles for a few hours, sometimes up to a day.

If you have an event coming up, tell us the date when you book, and we will help you time your treatments.'),
  ('filler-pricing', 0, 'Dermal filler pricing', 'Filler is priced by the syringe. Each syringe holds 1 milliliter of hyaluronic acid gel, which is about a fifth of a teaspoon. That sounds small, but it goes a long way in the face.

Lip filler: $750 per syringe. For a first-time, subtle result we also offer a half syringe for $450. Most first-time lip patients are happy with a half or one syringe.

Cheek filler: $800 per syringe. Cheeks usually need one to two syringes for a natural lift, depending on your goals and your starting point.

Chin and jawline filler: $800 per syringe, usually two or more syringes. We recommend a consultation first for these areas.'),
  ('filler-pricing', 1, 'Dermal filler pricing', 'We use FDA-approved hyaluronic acid fillers such as the Juvederm and Restylane families. Your injector chooses the product that suits the area. Most fillers contain lidocaine, a numbing medicine, which keeps the treatment comfortable.

A $100 deposit is needed to book any filler appointment, and it is applied to your treatment. Your price includes a free follow-up check two to four weeks after treatment. If you decide you want more volume at that visit, additional filler is charged at the normal per-syringe price.

Not sure how much you need? Book a free consultation and your provider will give you a written quote before you commit to anything. Financing through Cherry is available for larger treatment plans.'),
  ('first-visit-consultation', 0, 'Your first visit and free consultation', 'New to Glow MedSpa? Welcome. Here is what your first visit looks like.

Before you come: when you book, we text you a link to our new-patient forms. They ask about your health history, medications, allergies and skin goals, and take about 10 minutes. Filling them in ahead of time makes your visit faster.

Arriving: please arrive 10 minutes early and bring a photo ID. If you are coming for skin treatments, come with a clean face if you can, but do not worry if you are coming from work.

The consultation: consultations are free and last about 30 minutes. You will meet one of our providers, talk about what you would like to change, and get an honest opinion about what will and will not help. We take before photos for your private chart so we can compare later. You will leave with a written treatment plan and price quote.'),
  ('first-visit-consultation', 1, 'Your first visit and free consultation', 'Can I be treated the same day? Often, yes. If time allows and the treatment is a good fit, many patients have Botox or a HydraFacial at the same visit. Filler, microneedling and laser sometimes need a separate appointment, for example if you need to stop certain skincare products first.

There is never any pressure to book. Many patients take the plan home and think about it.

Who will I see? Our team includes Dr. Maya Chen, MD, our medical director; Jordan Lee, RN, nurse injector; Sofia Ramirez, licensed esthetician; and Priya Nair, laser technician.

To book, text us at (415) 555-0123, use our website chat, or call (415) 555-0100.'),
  ('gift-cards', 0, 'Gift cards', 'Glow MedSpa gift cards make a great present for birthdays, holidays, or anyone who deserves a little care.

How to buy: you can buy a gift card at the front desk or by calling (415) 555-0100. We can email an e-gift card right away, or you can pick up a printed card in a gift envelope. Gift cards come in any amount from $50. Popular choices are $225 (a HydraFacial) and $350 (a typical Botox visit).

How to use: gift cards can be used toward any treatment, product or membership at Glow MedSpa. Bring the card or the email to your appointment, or tell us the gift card number when you check out. Gift cards can be combined with other payment methods, and can be used to pay a deposit at the front desk.'),
  ('gift-cards', 1, 'Gift cards', 'Expiration: our gift cards do not expire and have no fees.

Cash value: gift cards cannot be exchanged for cash, except that in California, balances under $10 can be paid out in cash on request.

Lost cards: if you lose a gift card, call us with the name of the purchaser and the approximate purchase date. We keep a record of every card and can usually look it up and replace it.

Gift cards cannot be used for Cherry financing payments.'),
  ('hours-holidays', 0, 'Hours and holidays', 'Glow MedSpa is open six days a week:

- Monday to Friday: 9:00 AM to 7:00 PM
- Saturday: 9:00 AM to 3:00 PM
- Sunday: closed

All times are Pacific time. Our last appointments of the day start about an hour before closing, depending on the treatment. Evening and Saturday times fill up fastest, so we suggest booking those a week or two ahead.

Holiday closures for the 2026 season:
- Thanksgiving Day: Thursday, November 26, 2026
- Christmas Day: Friday, December 25, 2026
- New Year''s Day: Friday, January 1, 2027'),
  ('hours-holidays', 1, 'Hours and holidays', 'We are open normal hours on the days before and after these holidays unless we let you know otherwise.

You can text us any time at (415) 555-0123. Our text line and website chat can answer questions and book appointments around the clock. A team member follows up on anything that needs a person during business hours.

If you have an urgent concern after a treatment outside business hours, call (415) 555-0100 and follow the prompts to reach our on-call provider. For a medical emergency, call 911.'),
  ('how-long-results-last', 0, 'How long results last', 'Results vary from person to person, but these are typical timelines for our treatments.

Botox and Dysport: results start to show in 3 to 5 days, peak at about 2 weeks, and last 3 to 4 months. People with strong muscles or a fast metabolism, and people who exercise a lot, may find it wears off a little sooner. With regular treatments, many people find results last longer over time.

Lip filler: 6 to 12 months. Lips move constantly, so filler there breaks down faster than in other areas.

Cheek filler: 12 to 18 months, sometimes longer.

Chin and jawline filler: 12 to 18 months.

HydraFacial: the glow lasts about a week. Regular monthly facials keep skin clearer and more hydrated over time.'),
  ('how-long-results-last', 1, 'How long results last', 'Microneedling: collagen builds for about 3 months after each session, and results from a full series can last a year or more. A maintenance session once or twice a year helps keep it up.

Chemical peels: smoother, brighter skin for several weeks. Many people repeat a peel every 4 to 6 weeks during a series.

Laser hair removal: after a full series of 6 to 8 sessions, most people see a long-lasting reduction of 70 to 90 percent of hair in the area. Some hair may return over the years, especially with hormonal changes, so a touch-up session once or twice a year is common.

We will send you a friendly reminder when it is about time for your next visit. You can reply STOP at any time if you would rather not get these texts.'),
  ('hydrafacial-what-to-expect', 0, 'HydraFacial: what to expect', 'The HydraFacial is our most popular facial and a great first treatment if you are new to med spa care. It cleans, exfoliates and hydrates your skin in one visit, with no downtime.

How it works: the treatment uses a handheld device with a spiral tip that gently cleans and exfoliates while it pulls out oil and debris from your pores. Then we apply serums matched to your skin, such as hydrating, brightening or calming boosters. There are no needles, and most people find it relaxing. It feels like a cool, gentle suction.

Your appointment takes about 60 minutes, including a short skin check and time to choose your boosters. The price is $225, and optional boosters start at $50. No deposit is needed to book.'),
  ('hydrafacial-what-to-expect', 1, 'HydraFacial: what to expect', 'Who is it for? Almost everyone, including sensitive skin, oily or congested skin, dull or dehydrated skin, and people who want a refresh before an event. Pregnant patients can usually have a modified HydraFacial; let us know so we can choose safe serums.

After your facial: your skin may look slightly pink for up to an hour and will feel smooth and glowy. We suggest skipping heavy makeup, retinol and exfoliating products for the rest of the day. Use sunscreen as always.

The glow lasts about a week. For ongoing skin health, most people book a HydraFacial every 4 weeks. It is included every month in the Glow Club membership.'),
  ('location-parking', 0, 'Location and parking', 'Glow MedSpa is in Pacific Heights, San Francisco:

2150 Fillmore Street, Suite 200
San Francisco, CA 94115

We are on the second floor, above the bakery, between California Street and Sacramento Street. The building has an elevator and is wheelchair accessible. Ring the Suite 200 buzzer at the street door and we will let you in.

Parking: metered street parking is available on Fillmore Street and the side streets, usually with a 2-hour limit. Spots are easier to find before 11:00 AM. The closest garage is the Sutter Street public garage, about a 5-minute walk south. We validate 2 hours of parking at that garage; bring your ticket to the front desk.'),
  ('location-parking', 1, 'Location and parking', 'Public transit: the 22 Fillmore bus stops half a block away, and the 1 California and 3 Jackson lines stop within a few blocks. There is bike parking in front of the building.

Rideshare: ask to be dropped off at 2150 Fillmore Street. There is a short loading zone in front of the building.

Please plan to arrive 10 minutes early for your first visit so you have time to park and check in.'),
  ('membership', 0, 'Glow Club membership', 'The Glow Club is our monthly membership for patients who come in regularly. It is the best value if you like to keep up with your skin or Botox.

What it costs: $99 per month.

What is included:
- One HydraFacial or one chemical peel every month (a $180 to $225 value)
- Botox at $12 per unit instead of $14
- 10 percent off filler, microneedling and laser hair removal packages
- 10 percent off skincare products
- Member-only offers and early access to new treatments

Unused monthly facials roll over for one month, so you can save one and have two the next month.'),
  ('membership', 1, 'Glow Club membership', 'Terms: the membership has a 3-month minimum. After that, you can cancel any time with 30 days notice. You can pause your membership for up to 2 months once a year, for example for travel or pregnancy. Membership is for one person and cannot be shared, but you can use member pricing on a gift card for someone else.

Billing: your card is charged on the same day each month, starting on the day you join.

How to join: ask at your next visit, call (415) 555-0100, or text us at (415) 555-0123. Most members say the membership pays for itself in the first month.'),
  ('mens-treatments', 0, 'Treatments for men', 'About one in five of our patients are men, and the number is growing. Our providers are experienced in treating men''s faces and skin and aim for results that look natural and masculine.

Popular treatments for men:

Botox and Dysport: men usually have stronger facial muscles, so they often need a few more units than women for the same area. Common areas are the frown lines, forehead and crow''s feet. The goal is a rested, less tired look, not a frozen one. Jaw (masseter) treatment is also popular for teeth grinding and jaw clenching, and can slim a wide jaw.

Filler: chin and jawline filler can add definition and balance the profile. Under-eye and cheek filler can reduce a tired look.'),
  ('mens-treatments', 1, 'Treatments for men', 'Laser hair removal: back, chest, shoulders and the beard line (neck cleanup) are the most requested areas. It also helps men who get ingrown hairs and razor bumps from shaving.

HydraFacial and chemical peels: good for oily skin, large pores, and shaving irritation.

What to expect: our process is the same for everyone. You will start with a free 30-minute consultation, get a clear plan and price, and decide at your own pace. Treatments are quick, and most have little or no downtime, so they fit into a lunch break.

Prices are the same for everyone. For example, Botox is $14 per unit; men typically need 25 to 40 units for the upper face.'),
  ('neurotoxin-pricing', 0, 'Botox and Dysport pricing', 'We price neurotoxin treatments by the unit, so you only pay for what you need. Botox is $14 per unit. Dysport is dosed differently (it takes roughly two and a half to three Dysport units to equal one Botox unit), so we charge $5 per Dysport unit and the total usually ends up about the same. Xeomin is available on request at $14 per unit.

How many units do people usually need? Every face is different, but these are common ranges:

- Frown lines between the brows: 15 to 25 units
- Forehead lines: 8 to 20 units
- Crow''s feet (both sides): 12 to 24 units
- Lip flip: 4 to 6 units
- Jaw (masseter) slimming: 40 to 60 units'),
  ('neurotoxin-pricing', 1, 'Botox and Dysport pricing', 'Most patients spend around $350 per visit, which covers roughly 25 units. Your injector will map out a plan at the start of your appointment and tell you the unit count and price before treating.

A $50 deposit holds your appointment and is applied to your treatment. Results last about three to four months, so most patients come back every three months. Glow Club members pay $12 per unit.

The price includes a check at two weeks. If an area has not responded fully, small top-ups at that check are free. See our touch-up policy for details.'),
  ('payment-financing', 0, 'Payment methods and financing', 'We want paying for your treatment to be easy.

We accept:
- Visa, Mastercard, American Express and Discover
- Apple Pay and Google Pay
- Cash
- Glow MedSpa gift cards
- HSA and FSA cards, for eligible services

We do not accept personal checks.

HSA and FSA cards: cosmetic treatments are usually not eligible for HSA or FSA funds. Some treatments with a medical purpose may qualify, for example Botox for certain medical conditions when your doctor has documented it. Check with your plan administrator before your visit. We can give you an itemized receipt.'),
  ('payment-financing', 1, 'Payment methods and financing', 'Financing with Cherry: Cherry lets you split the cost of your treatment into monthly payments. Applying takes about a minute and does not affect your credit score to check your options. Plans with 0 APR are available for qualified applicants, and approval amounts depend on your credit. Ask the front desk or apply from the link on our website before your visit.

Deposits: deposits are paid online by card through a secure link that we text or show in the chat. They are applied to your treatment on the day.

Insurance: we do not bill health insurance. We can provide receipts you may submit yourself.

Payment is due at the end of each visit. Prepaid packages and memberships are charged when you sign up.'),
  ('prep-injectables', 0, 'How to prepare for Botox and filler', 'A little preparation helps lower bruising and makes your appointment go smoothly.

24 to 48 hours before:
- Avoid alcohol.
- Avoid supplements and medicines that thin the blood, such as fish oil, vitamin E, ginkgo, St. John''s wort, ibuprofen (Advil, Motrin), naproxen (Aleve) and aspirin. Acetaminophen (Tylenol) is fine if you need something for a headache.
- Important: do not stop any medicine your doctor has prescribed, including a daily aspirin, without talking to your doctor first. Just let us know you take it.

One to two weeks before:
- Avoid dental cleanings or dental work for 2 weeks before and after filler.
- If you get cold sores and are having lip filler, tell us. Your doctor may prescribe an antiviral to take beforehand.
- Let us know about any recent vaccines, illness or surgery.'),
  ('prep-injectables', 1, 'How to prepare for Botox and filler', 'On the day:
- Come with a clean face if possible, or we can cleanse your skin.
- Eat a normal meal beforehand.
- Bring a list of your medications and supplements.
- If you want to, bring a reference photo of a look you like. It helps us understand your goals.

Please reschedule if you have a cold sore, a skin infection, or you are feeling unwell. If you are pregnant or breastfeeding, we will wait to treat you.

Planning for an event? Book neurotoxin at least 2 weeks before, and filler 2 to 4 weeks before, to allow time for results to settle and any bruising to fade.'),
  ('pricing-overview', 0, 'Pricing overview', 'Here is a quick guide to what treatments cost at Glow MedSpa. Prices are per treatment and include your follow-up check where one applies. Your provider will confirm the exact price before anything is done, so there are never surprises at checkout.

Injectables: Botox and Dysport are priced per unit. Botox is $14 per unit, and most patients spend about $350 for a typical visit (for example, frown lines plus forehead). Lip filler is $750 per syringe, and a half-syringe lip option is $450. Cheek filler is $800 per syringe; most people need one or two syringes.

Skin treatments: a HydraFacial is $225. Microneedling is $400 per session, or $1,080 for a series of three when prepaid. A chemical peel is $180.'),
  ('pricing-overview', 1, 'Pricing overview', 'Laser hair removal: small areas (upper lip, chin, underarms, bikini line) are $150 per session. Large areas (full legs, back, chest) are $350 per session. Packages of six sessions are billed as five, so the sixth is free.

Consultations are always free and take about 30 minutes.

Some treatments need a deposit to hold your appointment: $50 for Botox or Dysport, $100 for filler, and $50 for microneedling or large-area laser. The deposit is applied to your treatment on the day. Members of the Glow Club pay lower prices on many services. Ask us about financing with Cherry if you would like to spread out the cost.'),
  ('privacy', 0, 'Privacy of your information', 'We take the privacy of your health information seriously. Here is how we handle it.

Your records: your health history, treatment notes and photos are stored in a secure, access-controlled system. Only the staff involved in your care can see them. We follow HIPAA, the federal law that protects health information, and California''s medical privacy laws.

Photos: we take before and after photos for your medical chart. We never use your photos in advertising or on social media without your separate, written permission, and you can withdraw that permission at any time.'),
  ('privacy', 1, 'Privacy of your information', 'Texting and chat: our text line and website chat help with booking, reminders and general questions. Text messages are not fully secure, so please do not send detailed medical history, insurance or card numbers by text. Call us if you would like to discuss something sensitive. We never ask for your card number by text; deposits are paid through a secure payment link.

Marketing messages: we only send marketing texts if you agreed to receive them. Reply STOP at any time to stop receiving texts, and HELP for help. We never sell or rent your phone number or personal information.

Your rights: you can ask for a copy of your records, ask us to correct them, or ask who has seen them. Contact our office manager at (415) 555-0100 or privacy@glowmedspa.example.

We keep your records for as long as the law requires, then dispose of them securely.'),
  ('sun-exposure-laser', 0, 'Sun exposure and laser treatments', 'Laser light targets pigment. Tanned skin has more pigment, which raises the chance of burns, blisters and dark or light spots. That is why sun protection matters so much before and after laser hair removal.

Before your laser session:
- Avoid sun tanning, tanning beds and spray or self-tanner for 2 weeks before treatment.
- If you have a tan, tell us. We may lower the settings or postpone your session until it fades.
- Shave the area 12 to 24 hours before your appointment. Do not wax, pluck or thread for 4 weeks before.
- Come with clean skin, with no lotion, deodorant or makeup on the area.

After your laser session:
- Avoid direct sun on the treated area for 2 weeks.
- Use a broad-spectrum sunscreen, SPF 30 or higher, every day, even when it is cloudy. Reapply every 2 hours when outside.
- Wear protective clothing or a hat.'),
  ('sun-exposure-laser', 1, 'Sun exposure and laser treatments', 'Planning around summer: many patients start laser hair removal in the fall or winter, when it is easier to keep skin out of the sun. Treating during summer is possible for areas that stay covered, such as underarms or bikini line.

Medications: some medicines, including certain antibiotics, acne treatments and herbal supplements, make skin more sensitive to light. Tell us about all medications at each visit. You need to be off Accutane for at least 6 months before laser treatment.

Our laser works for a wide range of skin tones. Your laser technician will do a patch test on your first visit if needed.'),
  ('touch-up-policy', 0, 'Touch-up policy', 'We want you to love your results. Here is how follow-ups and touch-ups work.

Botox and Dysport: neurotoxin takes up to 2 weeks to show its full effect, so please wait the full 2 weeks before judging your result. If, after 2 weeks, an area looks uneven or has not fully relaxed, contact us within 4 weeks of your treatment. We will book a free touch-up check, and any small top-up needed at that visit is free of charge. This applies to the areas treated at your original appointment.

If you would like a stronger result in a treated area, or want a new area treated, additional units are charged at the normal per-unit price.'),
  ('touch-up-policy', 1, 'Touch-up policy', 'Filler: every filler treatment includes a free follow-up check 2 to 4 weeks afterward, when swelling has settled. If you would like more volume, additional filler is charged at the normal per-syringe price. If a small area is uneven, your injector may be able to adjust it at no charge.

Skin and laser treatments: results from facials, peels, microneedling and laser build over a series, so there are no touch-ups for these. If you have any concerns about how your skin responded, contact us and we will book a free check.

To request a touch-up check, text us at (415) 555-0123 or call (415) 555-0100. If possible, send us a photo taken in good light with your face relaxed and in motion.')
) AS v(slug, chunk_index, title, content)
JOIN kb_documents d ON d.clinic_id = current_setting('app.clinic_id')::bigint AND d.slug = v.slug
ON CONFLICT (document_id, chunk_index) DO UPDATE SET
  title = EXCLUDED.title, content = EXCLUDED.content, embedding = NULL
WHERE (kb_chunks.title, kb_chunks.content) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content);

-- Drop chunks left over from a longer earlier version of a seeded document.
DELETE FROM kb_chunks k USING kb_documents d, (VALUES ('acne-scarring-consultation', 2), ('adverse-reaction', 3), ('aftercare-chemical-peel', 2), ('aftercare-filler', 2), ('aftercare-laser-hair-removal', 2), ('aftercare-microneedling', 2), ('aftercare-neurotoxin', 2), ('age-requirements', 2), ('bruising-swelling', 3), ('cancellation-deposit-policy', 2), ('combining-treatments', 2), ('comfort-numbing', 3), ('contraindications', 2), ('downtime', 2), ('filler-pricing', 2), ('first-visit-consultation', 2), ('gift-cards', 2), ('hours-holidays', 2), ('how-long-results-last', 2), ('hydrafacial-what-to-expect', 2), ('location-parking', 2), ('membership', 2), ('mens-treatments', 2), ('neurotoxin-pricing', 2), ('payment-financing', 2), ('prep-injectables', 2), ('pricing-overview', 2), ('privacy', 2), ('sun-exposure-laser', 2), ('touch-up-policy', 2)) AS v(slug, n)
WHERE d.clinic_id = current_setting('app.clinic_id')::bigint AND d.slug = v.slug AND k.document_id = d.id AND k.chunk_index >= v.n;

COMMIT;

-- ================================================================== Harbor Aesthetics (clinic 2)
BEGIN;
SELECT set_config('app.clinic_id', (SELECT id::text FROM clinics WHERE slug = 'harbor-aesthetics'), true);

-- providers
INSERT INTO providers (clinic_id, slug, name, title, calendar_id, working_hours) VALUES
  (current_setting('app.clinic_id')::bigint, 'elena-brooks', 'Dr. Elena Brooks', 'MD, aesthetic physician', 'elena.brooks@harboraesthetics.example', '{"mon": [], "tue": [["10:00", "18:00"]], "wed": [["10:00", "18:00"]], "thu": [["10:00", "18:00"]], "fri": [["10:00", "18:00"]], "sat": [["10:00", "16:00"]], "sun": []}'::jsonb)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  name = EXCLUDED.name, title = EXCLUDED.title, calendar_id = EXCLUDED.calendar_id,
  working_hours = EXCLUDED.working_hours
WHERE (providers.name, providers.title, providers.calendar_id, providers.working_hours)
  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.title, EXCLUDED.calendar_id, EXCLUDED.working_hours);

-- services
INSERT INTO services (clinic_id, slug, name, category, description, duration_min, buffer_min, price_cents, price_note, deposit_cents, prep_instructions, rebook_interval_days, synonyms, contraindications) VALUES
  (current_setting('app.clinic_id')::bigint, 'neurotoxin', 'Botox', 'neurotoxin', 'Wrinkle-relaxing injections for frown lines, forehead lines and crow''s feet. Priced per unit.', 30, 10, 1500, 'per unit', 5000, 'Avoid alcohol and blood-thinning supplements for 24-48 hours before.', 90, ARRAY['botox', 'tox', 'dysport', 'wrinkle relaxer', 'neurotoxin']::text[], '[{"condition": "pregnancy", "position": "Harbor Aesthetics does not give Botox while you are pregnant or breastfeeding. A HydraFacial with pregnancy-safe serums is fine, and we''re happy to plan Botox for after.", "suggest": ["hydrafacial"]}, {"condition": "breastfeeding", "position": "Harbor Aesthetics does not give Botox while you are pregnant or breastfeeding. A HydraFacial with pregnancy-safe serums is fine, and we''re happy to plan Botox for after.", "suggest": ["hydrafacial"]}, {"condition": "skin_lesion", "position": "With a rash, cold sore or open skin in the treatment area we''ll reschedule until it has healed."}, {"condition": "age", "position": "Botox is for patients 18 and older.", "min_age": 18, "suggest": ["hydrafacial"]}]'::jsonb),
  (current_setting('app.clinic_id')::bigint, 'hydrafacial', 'HydraFacial', 'facial', 'Cleanse, exfoliate, extract and hydrate in one 60-minute treatment with no downtime.', 60, 15, 25000, '', 0, 'Stop retinol and exfoliating acids 2 days before.', 30, ARRAY['hydrafacial', 'hydra facial', 'facial']::text[], '[{"condition": "skin_lesion", "position": "With a rash, cold sore or open skin in the treatment area we''ll reschedule until it has healed."}, {"condition": "age", "position": "We treat patients 16 and older; 16 and 17 year olds need a parent or guardian''s written consent.", "min_age": 16}]'::jsonb)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  name = EXCLUDED.name,
  category = EXCLUDED.category,
  description = EXCLUDED.description,
  duration_min = EXCLUDED.duration_min,
  buffer_min = EXCLUDED.buffer_min,
  price_cents = EXCLUDED.price_cents,
  price_note = EXCLUDED.price_note,
  deposit_cents = EXCLUDED.deposit_cents,
  prep_instructions = EXCLUDED.prep_instructions,
  rebook_interval_days = EXCLUDED.rebook_interval_days,
  synonyms = EXCLUDED.synonyms,
  contraindications = EXCLUDED.contraindications
WHERE (services.name, services.category, services.description, services.duration_min, services.buffer_min, services.price_cents, services.price_note, services.deposit_cents, services.prep_instructions, services.rebook_interval_days, services.synonyms, services.contraindications)
  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.description, EXCLUDED.duration_min, EXCLUDED.buffer_min, EXCLUDED.price_cents, EXCLUDED.price_note, EXCLUDED.deposit_cents, EXCLUDED.prep_instructions, EXCLUDED.rebook_interval_days, EXCLUDED.synonyms, EXCLUDED.contraindications);

-- who does what
INSERT INTO provider_services (clinic_id, provider_id, service_id)
SELECT current_setting('app.clinic_id')::bigint, p.id, s.id
FROM (VALUES
  ('elena-brooks', 'neurotoxin'),
  ('elena-brooks', 'hydrafacial')
) AS v(provider_slug, service_slug)
JOIN providers p ON p.clinic_id = current_setting('app.clinic_id')::bigint AND p.slug = v.provider_slug
JOIN services s ON s.clinic_id = current_setting('app.clinic_id')::bigint AND s.slug = v.service_slug
ON CONFLICT DO NOTHING;

-- clients (never updated on re-seed: consent and tags belong to the app once loaded)
INSERT INTO clients (clinic_id, phone_e164, name, email, timezone, consent_state, marketing_consent, tags, notes, created_at) VALUES
  (current_setting('app.clinic_id')::bigint, '+12125550141', 'Leah Goldberg', 'leah.goldberg@example.com', NULL, 'opted_in', 'granted', '{}'::text[], '', now() - interval '120 days'),
  (current_setting('app.clinic_id')::bigint, '+12125550142', 'Marcus Hill', NULL, NULL, 'opted_in', 'none', ARRAY['new']::text[], '', now() - interval '20 days'),
  (current_setting('app.clinic_id')::bigint, '+14155550142', 'Ava Patel', 'ava.patel@example.com', NULL, 'opted_in', 'granted', '{}'::text[], 'Visits our New York office when travelling for work.', now() - interval '30 days')
ON CONFLICT (clinic_id, phone_e164) DO NOTHING;

-- consent ledger
INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, scope, source, wording, created_at)
SELECT current_setting('app.clinic_id')::bigint, c.id, c.phone_e164, v.kind, v.scope, 'seed', v.wording, c.created_at + v.after
FROM (VALUES
  ('+12125550141', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+12125550142', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+14155550142', 'opt_in', 'transactional', 'Client agreed to receive texts at check-in.', interval '0 days'),
  ('+12125550141', 'opt_in', 'marketing', 'Client ticked "Text me offers and promotions" on the check-in form.', interval '0 days')
) AS v(phone, kind, scope, wording, after)
JOIN clients c ON c.clinic_id = current_setting('app.clinic_id')::bigint AND c.phone_e164 = v.phone
  -- a marketing grant only where the client row was created with it (a re-seed never widens consent)
  AND (v.scope <> 'marketing' OR c.marketing_consent = 'granted')
WHERE NOT EXISTS (
  SELECT 1 FROM consent_events e
  WHERE e.clinic_id = current_setting('app.clinic_id')::bigint AND e.phone_e164 = v.phone AND e.kind = v.kind
    AND e.scope = v.scope AND e.source = 'seed'
);

-- appointments: past and upcoming, relative to now() in the clinic's time zone
INSERT INTO appointments (
  clinic_id, kind, client_id, provider_id, service_id, starts_at, ends_at, blocked_until, status, source_key,
  deposit_cents, amount_charged_cents, calendar_sync, patient_confirmed_at, cancelled_at, cancel_reason, notes, created_at)
SELECT current_setting('app.clinic_id')::bigint, 'appointment', cl.id, p.id, s.id, t.starts_at,
  t.starts_at + make_interval(mins => s.duration_min),
  t.starts_at + make_interval(mins => s.duration_min + s.buffer_min),
  v.status, v.source_key, 0,
  -- what a completed visit was charged (spend segments): a per-unit treatment is about 25 units
  CASE WHEN v.status = 'completed' THEN s.price_cents * CASE WHEN s.price_note = 'per unit' THEN 25 ELSE 1 END END,
  CASE WHEN v.n > 0 THEN 'pending' ELSE 'none' END,
  CASE WHEN v.status IN ('confirmed', 'completed') THEN t.starts_at - interval '20 hours' END,
  CASE WHEN v.status = 'cancelled' THEN t.starts_at - interval '2 days' END,
  CASE WHEN v.status = 'cancelled' THEN 'Patient cancelled by text: schedule conflict.' ELSE '' END,
  CASE WHEN v.status = 'no_show' THEN 'Patient did not arrive.' ELSE '' END,
  LEAST(now() - interval '1 day', t.starts_at - interval '7 days')
FROM (VALUES
  ('seed:appt:1', '+12125550142', 'elena-brooks', 'hydrafacial', -10, time '11:00', 'completed'),
  ('seed:appt:101', '+12125550141', 'elena-brooks', 'neurotoxin', 2, time '11:00', 'booked')
) AS v(source_key, phone, provider_slug, service_slug, n, local_time, status)
JOIN clinics c ON c.slug = 'harbor-aesthetics'
JOIN providers p ON p.clinic_id = current_setting('app.clinic_id')::bigint AND p.slug = v.provider_slug
JOIN services s ON s.clinic_id = current_setting('app.clinic_id')::bigint AND s.slug = v.service_slug
JOIN clients cl ON cl.clinic_id = current_setting('app.clinic_id')::bigint AND cl.phone_e164 = v.phone
-- The day: n < 0 is the provider's last working day at least -n days ago; n > 0 is the n-th upcoming working
-- day (tomorrow onward). Working day = non-empty working_hours entry and not a clinic holiday.
CROSS JOIN LATERAL (
  SELECT g.day
  FROM (SELECT (now() AT TIME ZONE c.timezone)::date + k AS day, k FROM generate_series(-220, 21) AS k) AS g
  WHERE jsonb_array_length(coalesce(p.working_hours -> to_char(g.day, 'dy'), '[]'::jsonb)) > 0
    AND NOT c.holidays @> to_jsonb(g.day::text)
    AND CASE WHEN v.n > 0 THEN g.k >= 1 ELSE g.k <= v.n END
  ORDER BY CASE WHEN v.n > 0 THEN g.k ELSE -g.k END
  OFFSET CASE WHEN v.n > 0 THEN v.n - 1 ELSE 0 END
  LIMIT 1
) AS d
CROSS JOIN LATERAL (SELECT (d.day + v.local_time) AT TIME ZONE c.timezone AS starts_at) AS t
-- Never trip the no-overlap exclusion constraint (e.g. a re-seed after the app booked that slot).
WHERE NOT (
  v.status IN ('pending_deposit','booked','confirmed') AND EXISTS (
    SELECT 1 FROM appointments a
    WHERE a.provider_id = p.id AND a.status IN ('pending_deposit','booked','confirmed')
      AND a.source_key IS DISTINCT FROM v.source_key
      AND tstzrange(a.starts_at, a.blocked_until, '[)')
          && tstzrange(t.starts_at, t.starts_at + make_interval(mins => s.duration_min + s.buffer_min), '[)')
  )
)
ON CONFLICT (clinic_id, source_key) DO NOTHING;

-- knowledge base: 3 documents, 3 chunks (embeddings filled by the ingest command)
INSERT INTO kb_documents (clinic_id, slug, title, body, source, content_hash)
SELECT current_setting('app.clinic_id')::bigint, v.slug, v.title, v.body, 'seed', md5(v.body)
FROM (VALUES
  ('pricing', 'Harbor Aesthetics pricing', 'Here is what our treatments cost at Harbor Aesthetics in New York. Your provider confirms the exact price before treatment, so there are no surprises.

Botox is $15 per unit. Most patients need 20 to 40 units for the upper face, so a typical visit costs between $300 and $600. A $50 deposit holds your appointment and is applied to your treatment. Results last three to four months.

The HydraFacial is $250 and takes about 60 minutes. It includes a deep cleanse, gentle exfoliation, extractions and hydrating serums, with no downtime. No deposit is needed to book a HydraFacial.

Consultations with Dr. Elena Brooks are free. We accept all major credit cards, Apple Pay and Google Pay. We do not accept cash or personal checks, and we do not bill health insurance.'),
  ('hours-location', 'Harbor Aesthetics hours and location', 'Harbor Aesthetics is at 410 West 14th Street, 3rd Floor, New York, NY 10014, in the Meatpacking District. The building has an elevator; check in with the lobby desk and come up to the third floor.

Our hours are Monday to Friday from 10:00 AM to 6:00 PM and Saturday from 10:00 AM to 4:00 PM, Eastern time. We are closed on Sundays. We are also closed on Thanksgiving Day (November 26, 2026), Christmas Day (December 25, 2026) and New Year''s Day (January 1, 2027).

Getting here: the A, C, E and L trains stop at 14th Street and 8th Avenue, a short walk away. There is no on-site parking, but there are public garages on West 13th Street and West 15th Street. Street parking is very limited.

You can text us at (212) 555-0123 any time, or call the front desk at (212) 555-0100 during business hours.'),
  ('cancellation-policy', 'Harbor Aesthetics cancellation policy', 'We ask for at least 48 hours notice if you need to cancel or reschedule an appointment.

Deposits: Botox appointments need a $50 deposit to reserve your time. We send a secure payment link by text, and the time is held for 30 minutes while you pay. The deposit is applied to your treatment on the day of your visit.

If you cancel or reschedule 48 or more hours before your appointment, your deposit is refunded in full, or moved to your new appointment. If you cancel with less than 48 hours notice, the deposit is kept.

For appointments without a deposit, late cancellations and missed appointments are charged a $75 fee.

If you are running late, please text or call us. If you arrive more than 15 minutes late we may need to reschedule. Emergencies happen; contact us and we will do our best to help. To cancel, reply to any of our texts or call (212) 555-0100.')
) AS v(slug, title, body)
ON CONFLICT (clinic_id, slug) DO UPDATE SET
  title = EXCLUDED.title, body = EXCLUDED.body, content_hash = EXCLUDED.content_hash, updated_at = now()
WHERE (kb_documents.title, kb_documents.content_hash) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content_hash);

INSERT INTO kb_chunks (clinic_id, document_id, chunk_index, title, content)
SELECT current_setting('app.clinic_id')::bigint, d.id, v.chunk_index, v.title, v.content
FROM (VALUES
  ('pricing', 0, 'Harbor Aesthetics pricing', 'Here is what our treatments cost at Harbor Aesthetics in New York. Your provider confirms the exact price before treatment, so there are no surprises.

Botox is $15 per unit. Most patients need 20 to 40 units for the upper face, so a typical visit costs between $300 and $600. A $50 deposit holds your appointment and is applied to your treatment. Results last three to four months.

The HydraFacial is $250 and takes about 60 minutes. It includes a deep cleanse, gentle exfoliation, extractions and hydrating serums, with no downtime. No deposit is needed to book a HydraFacial.

Consultations with Dr. Elena Brooks are free. We accept all major credit cards, Apple Pay and Google Pay. We do not accept cash or personal checks, and we do not bill health insurance.'),
  ('hours-location', 0, 'Harbor Aesthetics hours and location', 'Harbor Aesthetics is at 410 West 14th Street, 3rd Floor, New York, NY 10014, in the Meatpacking District. The building has an elevator; check in with the lobby desk and come up to the third floor.

Our hours are Monday to Friday from 10:00 AM to 6:00 PM and Saturday from 10:00 AM to 4:00 PM, Eastern time. We are closed on Sundays. We are also closed on Thanksgiving Day (November 26, 2026), Christmas Day (December 25, 2026) and New Year''s Day (January 1, 2027).

Getting here: the A, C, E and L trains stop at 14th Street and 8th Avenue, a short walk away. There is no on-site parking, but there are public garages on West 13th Street and West 15th Street. Street parking is very limited.

You can text us at (212) 555-0123 any time, or call the front desk at (212) 555-0100 during business hours.'),
  ('cancellation-policy', 0, 'Harbor Aesthetics cancellation policy', 'We ask for at least 48 hours notice if you need to cancel or reschedule an appointment.

Deposits: Botox appointments need a $50 deposit to reserve your time. We send a secure payment link by text, and the time is held for 30 minutes while you pay. The deposit is applied to your treatment on the day of your visit.

If you cancel or reschedule 48 or more hours before your appointment, your deposit is refunded in full, or moved to your new appointment. If you cancel with less than 48 hours notice, the deposit is kept.

For appointments without a deposit, late cancellations and missed appointments are charged a $75 fee.

If you are running late, please text or call us. If you arrive more than 15 minutes late we may need to reschedule. Emergencies happen; contact us and we will do our best to help. To cancel, reply to any of our texts or call (212) 555-0100.')
) AS v(slug, chunk_index, title, content)
JOIN kb_documents d ON d.clinic_id = current_setting('app.clinic_id')::bigint AND d.slug = v.slug
ON CONFLICT (document_id, chunk_index) DO UPDATE SET
  title = EXCLUDED.title, content = EXCLUDED.content, embedding = NULL
WHERE (kb_chunks.title, kb_chunks.content) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content);

-- Drop chunks left over from a longer earlier version of a seeded document.
DELETE FROM kb_chunks k USING kb_documents d, (VALUES ('pricing', 1), ('hours-location', 1), ('cancellation-policy', 1)) AS v(slug, n)
WHERE d.clinic_id = current_setting('app.clinic_id')::bigint AND d.slug = v.slug AND k.document_id = d.id AND k.chunk_index >= v.n;

COMMIT;
